# End-to-end tests of `kestrel serve`: the real server on loopback ports, talked to over HTTP (raw
# sockets and http.client) and gRPC (Debian's python3-grpcio with messages generated from
# src/kestrel/protocol/*.proto). Needs /usr/bin/python3; the yolov5n/detect parts need ../shared
# (KESTREL_SHARED) and are skipped without it.
if(TARGET kestrel_serve_http)
  add_test(NAME server_e2e
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/server_e2e_test.py
                   --kestrel $<TARGET_FILE:kestrel> --source ${PROJECT_SOURCE_DIR})
  set_tests_properties(server_e2e PROPERTIES LABELS "server" TIMEOUT 240
                       ENVIRONMENT "KESTREL_SHARED=${KESTREL_SHARED_DIR}")
endif()
