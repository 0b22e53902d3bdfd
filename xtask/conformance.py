"""The Autobahn cases through kosoku (pinned in xtask/src/install.rs), for
`cargo xtask conformance`. Prints one JSON object per case on stdout.

    conformance.py server URL CASE...   drive the WebSocket server at URL
    conformance.py client CASE...       serve the cases on a free port (printed
                                        first as {"port": N}) to a client
"""

import asyncio
import json
import sys

from kosoku import FailureError, run_fuzzingclient, run_fuzzingserver


def report(results):
    for r in results:
        print(json.dumps({
            "case": r.case_id,
            "passed": r.passed,
            "behavior": r.behavior.value,
            "close": r.behavior_close.value,
            "remote_close_code": r.remote_close_code,
            "result": r.result,
            "result_close": r.result_close,
        }), flush=True)


async def main():
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        if mode == "server":
            results = await run_fuzzingclient(args[0], args[1:], concurrency=2)
        else:
            async with run_fuzzingserver(args, host="127.0.0.1", port=0) as server:
                print(json.dumps({"port": server.port}), flush=True)
                results = await server.get_result()
    except FailureError as failure:
        # Some cases did not pass: the caller decides which may not.
        results = failure.results
    report(results)


asyncio.run(main())
