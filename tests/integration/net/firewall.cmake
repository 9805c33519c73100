# The firewall's integration tests (root; private network namespaces only). Included from
# tests/integration/net/CMakeLists.txt.
isobox_test(net_firewall_integration_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/firewall_test.cc ${CMAKE_CURRENT_LIST_DIR}/firewall_topology.cc
  LIBS isobox_net
  LABELS integration)
