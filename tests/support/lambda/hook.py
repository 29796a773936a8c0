"""A Lambda function with a custom runtime: it polls the Runtime API it is given and answers
each invocation as an ECS lifecycle hook does. What it answers is steered by the payload's
`details` (as the metric's template writes them):

  outcome      SUCCEEDED (default) or FAILED, the final hookStatus
  inProgress   how many IN_PROGRESS answers (callBackDelay 1) come before the outcome,
               counted through the hookDetails handed back on each call
  answer       "unreadable" answers JSON without a hookStatus

Every payload received is appended as one JSON line to the file named by HOOK_LOG.
"""

import json
import os
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation"
LOG = os.environ["HOOK_LOG"]


def answer(event):
    details = event.get("details") or {}
    if details.get("answer") == "unreadable":
        return {"status": "fine, thanks"}
    calls = int((event.get("hookDetails") or {}).get("calls", 0))
    if calls < int(details.get("inProgress", "0")):
        return {"hookStatus": "IN_PROGRESS", "callBackDelay": 1, "hookDetails": {"calls": calls + 1}}
    return {"hookStatus": details.get("outcome", "SUCCEEDED")}


def main():
    while True:
        with urllib.request.urlopen(API + "/next") as invocation:
            request_id = invocation.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(invocation.read() or b"{}")
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(event) + "\n")
        body = json.dumps(answer(event)).encode()
        response = urllib.request.Request(API + "/" + request_id + "/response", data=body, method="POST")
        urllib.request.urlopen(response).read()


if __name__ == "__main__":
    main()
