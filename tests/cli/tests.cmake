# The engine subcommands end to end on yolov5n on the CPU (cli_e2e.sh): perf --streams, and --tf32
# through build, inspect, perf and run. Needs ../shared (KESTREL_SHARED); skipped without it.
add_test(NAME cli_e2e COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cli_e2e.sh $<TARGET_FILE:kestrel>)
set_tests_properties(cli_e2e PROPERTIES LABELS "cli;models" TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "KESTREL_SHARED=${KESTREL_SHARED_DIR};OMP_WAIT_POLICY=passive")
