# kestrel bench end to end: the bench against a fake KServe v2 server (HTTP and gRPC), and against
# a real `kestrel serve` once the server is part of the build. bench_e2e.sh checks the CSV header,
# the JSON, the HTML report in headless Chromium (skipped without chromium), --accuracy and
# --cold-start.
kestrel_layer_view(bench BENCH_TEST_VIEW)
add_executable(fake_kserve_server ${CMAKE_CURRENT_LIST_DIR}/fake_kserve_server.cc)
target_include_directories(fake_kserve_server PRIVATE ${BENCH_TEST_VIEW})
target_link_libraries(fake_kserve_server PRIVATE kestrel_bench kestrel_protocol CLI11::CLI11)

add_test(NAME bench_e2e
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/bench_e2e.sh $<TARGET_FILE:kestrel>
                 $<TARGET_FILE:fake_kserve_server>)
set_tests_properties(bench_e2e PROPERTIES LABELS "bench;server" TIMEOUT 300
                     ENVIRONMENT "KESTREL_SHARED=${KESTREL_SHARED_DIR}")
