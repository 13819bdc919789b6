"""A small app for the host's own tests: what each function received is in its answer, or
in a file under RECEIVED_DIR for the queue function."""

import hashlib
import json
import os
from pathlib import Path

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _seen(req: Request) -> dict[str, object]:
    return {
        "params": dict(req.path_params),
        "path": req.url.path,
        "query": sorted(req.query_params.multi_items()),
        "invocation": req.headers.get("x-ms-invocation-id", ""),
        "forwarded_host": req.headers.get("x-forwarded-host", ""),
        "forwarded_proto": req.headers.get("x-forwarded-proto", ""),
        "probe": req.headers.get("x-probe", ""),
    }


# Sorts first by name: the host reaches it before "b_things_special" even though that
# template is more specific.
@app.route(route="things/{thing}", methods=["GET"])
async def a_thing(req: Request) -> Response:
    return Response(
        json.dumps({"function": "a_thing", **_seen(req)}), media_type="application/json"
    )


@app.route(route="things/special", methods=["GET", "DELETE"])
async def b_things_special(req: Request) -> Response:
    return Response(json.dumps({"function": "b_things_special", **_seen(req)}))


@app.route(route="Studies{study}/x/{rest?}", methods=["GET"])
async def c_complex(req: Request) -> Response:
    return Response(json.dumps({"function": "c_complex", **_seen(req)}))


@app.route(route="echo", methods=["POST"])
async def echo_digest(req: Request) -> Response:
    digest, size = hashlib.sha256(), 0
    async for chunk in req.stream():
        digest.update(chunk)
        size += len(chunk)
    return Response(json.dumps({"sha256": digest.hexdigest(), "size": size}))


@app.route(route="stream/{count:int}", methods=["GET"])
async def stream_blocks(req: Request) -> StreamingResponse:
    count = int(req.path_params["count"])

    async def blocks():  # type: ignore[no-untyped-def]
        for n in range(count):
            yield bytes([n % 256]) * 65536

    return StreamingResponse(blocks(), media_type="application/octet-stream")


@app.route(route="fail", methods=["GET"])
async def fail_always(req: Request) -> Response:
    raise RuntimeError("this function always fails")


@app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
async def work_items(msg: func.QueueMessage) -> None:
    body = msg.get_json()
    record = {
        "body": body,
        "id": msg.id,
        "dequeue_count": msg.dequeue_count,
        "pop_receipt": msg.pop_receipt,
        "insertion_time": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "time_next_visible": msg.time_next_visible.isoformat() if msg.time_next_visible else None,
    }
    folder = Path(os.environ["RECEIVED_DIR"])
    (folder / f"{body['n']}-{msg.dequeue_count}.json").write_text(json.dumps(record))
    if body.get("fail"):
        raise RuntimeError("asked to fail")


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_TIMER_SCHEDULE%")
async def tick(timer: func.TimerRequest) -> None:
    """Records each occurrence, by the due time the host passed, and this process."""
    due = str(timer.schedule_status.get("LastUpdated", "")).replace(":", "-")
    record = {"past_due": timer.past_due, "status": timer.schedule_status, "pid": os.getpid()}
    folder = Path(os.environ["RECEIVED_DIR"]) / "ticks"
    folder.mkdir(exist_ok=True)
    (folder / f"{due}-{os.getpid()}.json").write_text(json.dumps(record))


@app.route(route="{*path}", methods=["GET", "POST", "PUT", "DELETE"])
async def z_fallback(req: Request) -> Response:
    return Response(json.dumps({"function": "z_fallback", **_seen(req)}), status_code=404)
