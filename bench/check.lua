-- wrk: POST one entitlement check per request (body and key from the environment)
wrk.method = "POST"
wrk.body = os.getenv("CHECK_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CHECK_KEY")
