# The firewall's integration tests (root; private network namespaces only). Included from
# tests/integration/net/CMakeLists.txt.
isobox_test(net_firewall_integration_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/firewall_test.cc ${CMAKE_CURRENT_LIST_DIR}/firewall_topology.cc
  LIBS isobox_net
  LABELS integration)

# Not a test: prints the latency of Install, Apply and Remove (numbers in the notes).
add_executable(net_firewall_bench ${CMAKE_CURRENT_LIST_DIR}/firewall_bench.cc)
target_link_libraries(net_firewall_bench PRIVATE isobox_net)

# The connection cap, the kernel's log of denied packets and the conntrack cleanup.
isobox_test(net_accounting_integration_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/accounting_test.cc ${CMAKE_CURRENT_LIST_DIR}/firewall_topology.cc
  LIBS isobox_net
  LABELS integration)
