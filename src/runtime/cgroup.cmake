# Sandbox resource limits over cgroup v2 and v1. Included from src/runtime/CMakeLists.txt.
add_library(isobox_cgroup STATIC
  cgroup.cc
  cgroup_v1.cc
  cgroup_v2.cc
)
target_link_libraries(isobox_cgroup PUBLIC isobox_base)
