# Every environ key and the type of its value, as JSON.
import json


def application(environ, start_response):
    body = json.dumps({k: type(v).__name__ for k, v in environ.items()}, sort_keys=True)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode("utf-8")]
