-- GET a small page (directories): measures per-request overhead.
wrk.headers["Authorization"] = "Bearer bench-key"
