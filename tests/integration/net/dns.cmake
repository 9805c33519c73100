# The sandboxes' DNS resolver (src/net/dns_resolver.h) against fake upstream DNS servers
# on 127.0.0.x addresses (fake_dns_server.h). Needs no root and no network namespace: it
# binds loopback addresses and free ports only. Included from this directory's
# CMakeLists.txt.
isobox_test(net_dns_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/dns_resolver_test.cc ${CMAKE_CURRENT_LIST_DIR}/fake_dns_server.cc
  LIBS isobox_net
  LABELS integration)
