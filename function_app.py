"""The route table: one function per DICOMweb route, one per job queue, one per timer.

Each body is a single call into ``dicom_core.web`` (HTTP) or ``dicom_core.jobs`` (queues, timers);
nothing else lives here. An HTTP body is ``handle(req, services, <module>.<handler>)``: the
handler is the one in ``dicom_core/web/<module>.py`` that serves the route, and ``handle`` puts
it behind the gate (CORS, token) and maps service errors to status codes, for every route
alike. Requests and
responses use the HTTP-streams types (Starlette under the hood), so bodies stream in Azure
and in the local host alike. Routes are grouped by transaction family.

To add a route: a function here, and its handler in the module of its transaction family.
"""

import os
from pathlib import Path

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from dicom_core import jobs
from dicom_core.settings import blob_debt_schedule, expiry_schedule
from dicom_core.web import (
    bulk_update,
    change_feed,
    delete,
    export,
    frames,
    metadata,
    operations,
    partitions,
    qido,
    rendered,
    stow,
    wado,
    workitems,
)
from dicom_core.web import extended_query_tags as eqt
from dicom_core.web.context import ServiceContainer, handle
from dicom_core.web.unmatched import unknown_route

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
services = ServiceContainer()
# host.json's maxDequeueCount, read once: the same rule the host applies before the poison queue.
retry = jobs.RetryRule.from_app_dir(Path(__file__).parent)

STUDY = "v{version}/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"

# --- STOW-RS ---------------------------------------------------------------------------------


@app.route(route="v{version}/studies", methods=["POST", "PUT"])
async def stow_store_instances(req: Request) -> Response:
    return await handle(req, services, stow.store_instances)


@app.route(route=STUDY, methods=["POST", "PUT"])
async def stow_store_study_instances(req: Request) -> Response:
    return await handle(req, services, stow.store_instances)


# --- Bulk update ---------------------------------------------------------------------------
# Its function name sorts before the STOW functions', so the host tries this route before
# v{version}/studies/{study}, which would otherwise take "$bulkUpdate" for a study UID.


@app.route(route="v{version}/studies/$bulkUpdate", methods=["POST"])
async def bulk_update_studies(req: Request) -> Response:
    return await handle(req, services, bulk_update.start_bulk_update)


# --- WADO-RS ---------------------------------------------------------------------------------


@app.route(route=STUDY, methods=["GET"])
async def wado_retrieve_study(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=SERIES, methods=["GET"])
async def wado_retrieve_series(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=INSTANCE, methods=["GET"])
async def wado_retrieve_instance(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=STUDY + "/metadata", methods=["GET"])
async def wado_retrieve_study_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=SERIES + "/metadata", methods=["GET"])
async def wado_retrieve_series_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


# The curl tutorial's series-metadata request drops the slash after "studies"; served as
# written so the tutorial works unchanged.
@app.route(route="v{version}/studies{study}/series/{series}/metadata", methods=["GET"])
async def wado_retrieve_series_metadata_tutorial_path(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=INSTANCE + "/metadata", methods=["GET"])
async def wado_retrieve_instance_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=INSTANCE + "/frames/{frames}", methods=["GET"])
async def wado_retrieve_frames(req: Request) -> Response:
    return await handle(req, services, frames.retrieve_frames)


@app.route(route=INSTANCE + "/rendered", methods=["GET"])
async def wado_retrieve_rendered_instance(req: Request) -> Response:
    return await handle(req, services, rendered.retrieve_rendered)


@app.route(route=INSTANCE + "/frames/{frame}/rendered", methods=["GET"])
async def wado_retrieve_rendered_frame(req: Request) -> Response:
    return await handle(req, services, rendered.retrieve_rendered)


# --- QIDO-RS ---------------------------------------------------------------------------------


@app.route(route="v{version}/studies", methods=["GET"])
async def qido_search_for_studies(req: Request) -> Response:
    return await handle(req, services, qido.search_for_studies)


@app.route(route="v{version}/series", methods=["GET"])
async def qido_search_for_series(req: Request) -> Response:
    return await handle(req, services, qido.search_for_series)


@app.route(route="v{version}/instances", methods=["GET"])
async def qido_search_for_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


@app.route(route=STUDY + "/series", methods=["GET"])
async def qido_search_for_study_series(req: Request) -> Response:
    return await handle(req, services, qido.search_for_series)


@app.route(route=STUDY + "/instances", methods=["GET"])
async def qido_search_for_study_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


@app.route(route=SERIES + "/instances", methods=["GET"])
async def qido_search_for_series_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


# --- Delete ----------------------------------------------------------------------------------


@app.route(route=STUDY, methods=["DELETE"])
async def delete_study(req: Request) -> Response:
    return await handle(req, services, delete.delete)


@app.route(route=SERIES, methods=["DELETE"])
async def delete_series(req: Request) -> Response:
    return await handle(req, services, delete.delete)


@app.route(route=INSTANCE, methods=["DELETE"])
async def delete_instance(req: Request) -> Response:
    return await handle(req, services, delete.delete)


# --- Extended query tags ---------------------------------------------------------------------


@app.route(route="v{version}/extendedquerytags", methods=["POST"])
async def eqt_add_tags(req: Request) -> Response:
    return await handle(req, services, eqt.add_tags)


@app.route(route="v{version}/extendedquerytags", methods=["GET"])
async def eqt_list_tags(req: Request) -> Response:
    return await handle(req, services, eqt.list_tags)


@app.route(route="v{version}/extendedquerytags/{tagPath}", methods=["GET", "PATCH", "DELETE"])
async def eqt_tag(req: Request) -> Response:
    return await handle(req, services, eqt.tag)


@app.route(route="v{version}/extendedquerytags/{tagPath}/errors", methods=["GET"])
async def eqt_tag_errors(req: Request) -> Response:
    return await handle(req, services, eqt.tag_errors)


# --- Change feed -----------------------------------------------------------------------------


@app.route(route="v{version}/changefeed", methods=["GET"])
async def changefeed_read(req: Request) -> Response:
    return await handle(req, services, change_feed.read_changes)


@app.route(route="v{version}/changefeed/latest", methods=["GET"])
async def changefeed_latest(req: Request) -> Response:
    return await handle(req, services, change_feed.latest_change)


# --- Export ----------------------------------------------------------------------------------


@app.route(route="v{version}/export", methods=["POST"])
async def export_dicom_files(req: Request) -> Response:
    return await handle(req, services, export.start_export)


# --- Operations ------------------------------------------------------------------------------


@app.route(route="v{version}/operations/{operationId}", methods=["GET"])
async def operations_get(req: Request) -> Response:
    return await handle(req, services, operations.operation)


# --- UPS-RS ----------------------------------------------------------------------------------

WORKITEM = "v{version}/workitems/{workitem}"


@app.route(route="v{version}/workitems", methods=["POST"])
async def ups_create_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.create)


@app.route(route="v{version}/workitems", methods=["GET"])
async def ups_search_workitems(req: Request) -> Response:
    return await handle(req, services, workitems.search)


@app.route(route=WORKITEM, methods=["GET"])
async def ups_retrieve_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.retrieve)


@app.route(route=WORKITEM, methods=["POST"])
async def ups_update_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.update)


@app.route(route=WORKITEM + "/state", methods=["PUT"])
async def ups_change_workitem_state(req: Request) -> Response:
    return await handle(req, services, workitems.change_state)


@app.route(route=WORKITEM + "/cancelrequest", methods=["POST"])
async def ups_request_workitem_cancellation(req: Request) -> Response:
    return await handle(req, services, workitems.cancel_request)


# Watch and Event (subscriptions): 501, as the Azure service does not implement them. The
# global subscription UID (1.2.840.10008.5.1.4.34.5) is matched by {workitem}.
@app.route(route=WORKITEM + "/subscribers/{aetitle}", methods=["POST", "DELETE"])
async def ups_subscription(req: Request) -> Response:
    return await handle(req, services, workitems.subscription)


@app.route(route=WORKITEM + "/subscribers/{aetitle}/suspend", methods=["POST"])
async def ups_suspend_subscription(req: Request) -> Response:
    return await handle(req, services, workitems.subscription)


@app.route(route="v{version}/subscribers/{aetitle}", methods=["GET"])
async def ups_open_subscription_channel(req: Request) -> Response:
    return await handle(req, services, workitems.subscription)


# --- Data partitions ---------------------------------------------------------------------------
# With DICOM_DATA_PARTITIONS on, a request names its partition in the URL, and every route of
# the transactions Azure partitions has a twin under v{version}/partitions/{partition}/ (the
# handler asks ``partition_of``, which also answers the unpartitioned forms with Azure's 400s).
# The change feed, extended query tags and operations stay global, as in Azure. Every name
# starts "partition", so it sorts after the routes above that share no prefix with them and
# before the catch-all; "partition_bulk_update_studies" sorts before the STOW twins, as
# "bulk_update_studies" does before the STOW routes.

PARTITION = "v{version}/partitions/{partition}"
P_STUDY = PARTITION + "/studies/{study}"
P_SERIES = P_STUDY + "/series/{series}"
P_INSTANCE = P_SERIES + "/instances/{instance}"


@app.route(route="v{version}/partitions", methods=["GET"])
async def partitions_list(req: Request) -> Response:
    return await handle(req, services, partitions.list_partitions)


@app.route(route=PARTITION + "/studies", methods=["POST", "PUT"])
async def partition_stow_store_instances(req: Request) -> Response:
    return await handle(req, services, stow.store_instances)


@app.route(route=P_STUDY, methods=["POST", "PUT"])
async def partition_stow_store_study_instances(req: Request) -> Response:
    return await handle(req, services, stow.store_instances)


@app.route(route=PARTITION + "/studies/$bulkUpdate", methods=["POST"])
async def partition_bulk_update_studies(req: Request) -> Response:
    return await handle(req, services, bulk_update.start_bulk_update)


@app.route(route=P_STUDY, methods=["GET"])
async def partition_wado_retrieve_study(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=P_SERIES, methods=["GET"])
async def partition_wado_retrieve_series(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=P_INSTANCE, methods=["GET"])
async def partition_wado_retrieve_instance(req: Request) -> Response:
    return await handle(req, services, wado.retrieve)


@app.route(route=P_STUDY + "/metadata", methods=["GET"])
async def partition_wado_retrieve_study_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=P_SERIES + "/metadata", methods=["GET"])
async def partition_wado_retrieve_series_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=P_INSTANCE + "/metadata", methods=["GET"])
async def partition_wado_retrieve_instance_metadata(req: Request) -> Response:
    return await handle(req, services, metadata.retrieve_metadata)


@app.route(route=P_INSTANCE + "/frames/{frames}", methods=["GET"])
async def partition_wado_retrieve_frames(req: Request) -> Response:
    return await handle(req, services, frames.retrieve_frames)


@app.route(route=P_INSTANCE + "/rendered", methods=["GET"])
async def partition_wado_retrieve_rendered_instance(req: Request) -> Response:
    return await handle(req, services, rendered.retrieve_rendered)


@app.route(route=P_INSTANCE + "/frames/{frame}/rendered", methods=["GET"])
async def partition_wado_retrieve_rendered_frame(req: Request) -> Response:
    return await handle(req, services, rendered.retrieve_rendered)


@app.route(route=PARTITION + "/studies", methods=["GET"])
async def partition_qido_search_for_studies(req: Request) -> Response:
    return await handle(req, services, qido.search_for_studies)


@app.route(route=PARTITION + "/series", methods=["GET"])
async def partition_qido_search_for_series(req: Request) -> Response:
    return await handle(req, services, qido.search_for_series)


@app.route(route=PARTITION + "/instances", methods=["GET"])
async def partition_qido_search_for_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


@app.route(route=P_STUDY + "/series", methods=["GET"])
async def partition_qido_search_for_study_series(req: Request) -> Response:
    return await handle(req, services, qido.search_for_series)


@app.route(route=P_STUDY + "/instances", methods=["GET"])
async def partition_qido_search_for_study_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


@app.route(route=P_SERIES + "/instances", methods=["GET"])
async def partition_qido_search_for_series_instances(req: Request) -> Response:
    return await handle(req, services, qido.search_for_instances)


@app.route(route=P_STUDY, methods=["DELETE"])
async def partition_delete_study(req: Request) -> Response:
    return await handle(req, services, delete.delete)


@app.route(route=P_SERIES, methods=["DELETE"])
async def partition_delete_series(req: Request) -> Response:
    return await handle(req, services, delete.delete)


@app.route(route=P_INSTANCE, methods=["DELETE"])
async def partition_delete_instance(req: Request) -> Response:
    return await handle(req, services, delete.delete)


# Beyond Azure (its feed is global): one partition's entries of the feed.
@app.route(route=PARTITION + "/changefeed", methods=["GET"])
async def partition_changefeed_read(req: Request) -> Response:
    return await handle(req, services, change_feed.read_changes)


@app.route(route=PARTITION + "/changefeed/latest", methods=["GET"])
async def partition_changefeed_latest(req: Request) -> Response:
    return await handle(req, services, change_feed.latest_change)


@app.route(route=PARTITION + "/export", methods=["POST"])
async def partition_export_dicom_files(req: Request) -> Response:
    return await handle(req, services, export.start_export)


# UPS-RS: every workitem transaction but the subscriptions, which Azure has no partitioned
# form of (they fall to the catch-all's 404). Create makes the partition, as STOW does.
P_WORKITEM = PARTITION + "/workitems/{workitem}"


@app.route(route=PARTITION + "/workitems", methods=["POST"])
async def partition_ups_create_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.create)


@app.route(route=PARTITION + "/workitems", methods=["GET"])
async def partition_ups_search_workitems(req: Request) -> Response:
    return await handle(req, services, workitems.search)


@app.route(route=P_WORKITEM, methods=["GET"])
async def partition_ups_retrieve_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.retrieve)


@app.route(route=P_WORKITEM, methods=["POST"])
async def partition_ups_update_workitem(req: Request) -> Response:
    return await handle(req, services, workitems.update)


@app.route(route=P_WORKITEM + "/state", methods=["PUT"])
async def partition_ups_change_workitem_state(req: Request) -> Response:
    return await handle(req, services, workitems.change_state)


@app.route(route=P_WORKITEM + "/cancelrequest", methods=["POST"])
async def partition_ups_request_workitem_cancellation(req: Request) -> Response:
    return await handle(req, services, workitems.cancel_request)


# --- Jobs ------------------------------------------------------------------------------------


@app.queue_trigger(arg_name="msg", queue_name=jobs.CLEANUP_QUEUE, connection="AzureWebJobsStorage")
async def jobs_cleanup_blob(msg: func.QueueMessage) -> None:
    await jobs.cleanup_blob(
        msg.get_json(), services, dequeue_count=msg.dequeue_count or 1, retry=retry
    )


@app.queue_trigger(arg_name="msg", queue_name=jobs.REINDEX_QUEUE, connection="AzureWebJobsStorage")
async def jobs_reindex_batch(msg: func.QueueMessage) -> None:
    await jobs.reindex_batch(
        msg.get_json(), services, dequeue_count=msg.dequeue_count or 1, retry=retry
    )


@app.queue_trigger(
    arg_name="msg", queue_name=jobs.BULK_UPDATE_QUEUE, connection="AzureWebJobsStorage"
)
async def jobs_bulk_update_step(msg: func.QueueMessage) -> None:
    await jobs.bulk_update_step(
        msg.get_json(), services, dequeue_count=msg.dequeue_count or 1, retry=retry
    )


# --- Events --------------------------------------------------------------------------------
# DICOM events follow the change feed on a timer (dicom_core.jobs.events). Its schedule is
# DICOM_EVENTS_SCHEDULE, read when the worker indexes the app, with a default: every 10 s while
# DICOM_EVENTS is on, once a day while off (each tick wakes a scaled-in app). Not a
# %DICOM_EVENTS_SCHEDULE% binding expression: the host disables a timer whose setting is
# missing, so every deployment would have to set it, where a default serves all but tests
# (which tick every second).
EVENTS_SCHEDULE = jobs.events_schedule(os.environ)


@app.timer_trigger(arg_name="timer", schedule=EVENTS_SCHEDULE)
async def events_publish(timer: func.TimerRequest) -> None:
    await jobs.publish_events(services)


@app.queue_trigger(arg_name="msg", queue_name=jobs.EXPORT_QUEUE, connection="AzureWebJobsStorage")
async def jobs_export_batch(msg: func.QueueMessage) -> None:
    await jobs.export_batch(
        msg.get_json(), services, dequeue_count=msg.dequeue_count or 1, retry=retry
    )


# --- Study expiry --------------------------------------------------------------------------
# Deletes the studies whose expiry (STOW's msdicom-expiry-* headers) has passed, a page per
# run (dicom_core.services.expiry). Its schedule, DICOM_EXPIRY_SCHEDULE, is read when the worker
# indexes the app, with a default (every minute), for the reasons given for the events timer.
@app.timer_trigger(arg_name="timer", schedule=expiry_schedule(os.environ))
async def jobs_expire_studies(timer: func.TimerRequest) -> None:
    await jobs.expire_studies(services)


# --- Blob debts ----------------------------------------------------------------------------
# Deletes the files that a delete's index step freed but its process did not live to delete
# (dicom_core.services.blob_cleanup). Its schedule, DICOM_BLOB_DEBT_SCHEDULE (every five
# minutes by default; a tick with no debt is one indexed query), is read as the expiry timer's.
@app.timer_trigger(arg_name="timer", schedule=blob_debt_schedule(os.environ))
async def jobs_settle_blob_debts(timer: func.TimerRequest) -> None:
    await jobs.settle_blob_debts(services)


# --- Anything else: 405 with Allow, or 404 naming the versions ------------------------------
# The Functions host does not rank routes by specificity: it registers them in the order of
# function names (ordinal, case-insensitive) and the first template-and-method match wins. A
# catch-all must therefore be the last function by name, or it swallows every route after it.
# tests/unit/test_routing.py fails if another function's name ever sorts after this one.


@app.route(route="{*path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def zz_unknown_route(req: Request) -> Response:
    return await unknown_route(req, services, app)
