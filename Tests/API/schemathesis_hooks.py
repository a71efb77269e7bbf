"""Schemathesis hooks for test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document states a few rules in prose because JSON Schema cannot: `agg` needs
`bucket_s`, `from_us` may not be after `to_us`, and a command `name` is at most 64 *bytes*
(`maxLength` counts characters). A case generated as valid that breaks one of them is not
valid, so these hooks bring such positive cases back inside the rules; negative cases are
left alone (the hub must refuse them, and does).

Two more keep the run useful and short:
- the connected device with stored telemetry (`LIVE_DEVICE`) is not changed, deleted or
  given a new token (schemathesis reuses ids it has seen in answers): such a request is
  sent for `SPARE_DEVICE` instead, so the live device's rows and commands stay there to
  be checked against the document for the whole run;
- `wait_s` makes `POST …/commands` wait up to a minute for a device that is not
  connected, so waits above one second are cut to one.
"""

import schemathesis

END_OF_TIME_US = 253402300800000000  # readings lie in [0, this)
MAX_NAME_BYTES = 64
MAX_WAIT_S = 1
LIVE_DEVICE = "api-live-1"  # as in test_openapi.py and schemathesis.toml
SPARE_DEVICE = "sensor-1"
CHANGES = {"PATCH /api/v1/devices/{id}", "DELETE /api/v1/devices/{id}", "POST /api/v1/devices/{id}/token"}


def _integer(value):
    """A query value as an int (the coverage phase sends them as text), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _clamped_range(query):
    """`from_us` and `to_us` as the hub compares them (TelemetryRoutes), or None each."""
    low, high = _integer(query.get("from_us")), _integer(query.get("to_us"))
    low = None if low is None or low <= 0 else min(low, END_OF_TIME_US)
    high = None if high is None else min(max(high, 0), END_OF_TIME_US)
    return low, high


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _telemetry(case):
    query = case.query
    if not isinstance(query, dict):
        return
    if "agg" in query and "bucket_s" not in query:
        query["bucket_s"] = 60
    low, high = _clamped_range(query)
    if low is not None and high is not None and low > high:
        query["from_us"], query["to_us"] = query["to_us"], query["from_us"]


def _command_name(case):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        name = body["name"]
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            name = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")
            body["name"] = name or "x"


def _short_wait(case):
    body = case.body
    if not isinstance(body, dict):
        return
    wait = body.get("wait_s")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and MAX_WAIT_S < wait <= 60:
        body["wait_s"] = MAX_WAIT_S


@schemathesis.hook
def map_case(context, case):
    label = f"{case.method.upper()} {case.path}"
    if label in CHANGES and isinstance(case.path_parameters, dict) and case.path_parameters.get("id") == LIVE_DEVICE:
        case.path_parameters["id"] = SPARE_DEVICE
    if label == "POST /api/v1/devices/{id}/commands":
        _short_wait(case)
        if _is_positive(case):
            _command_name(case)
    elif label == "GET /api/v1/devices/{id}/telemetry" and _is_positive(case):
        _telemetry(case)
    return case
