# The SOCKS5 client of egressProxy (src/net/socks5.h) against scripted SOCKS5 servers on
# 127.0.0.1 (socks5_test.cc). Needs no root and no network namespace: loopback and free
# ports only. Included from this directory's CMakeLists.txt.
isobox_test(net_socks5_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/socks5_test.cc
  LIBS isobox_net
  LABELS integration)
