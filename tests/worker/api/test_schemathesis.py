"""Property-based run of every documented operation against /openapi.json (schemathesis v4).

Checks: no server errors, and each answer's status, content type and body conform to the
document. Runs on fake Redis with one stored course, a fake OneRoster and a fake broker.
"""

from __future__ import annotations

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.oneroster.models import CourseRecords
from tests.core.bundle.records import Catalog, course
from tests.worker.api.conftest import FakeSender, FakeUpstream, bearer, settings_for
from tests.worker.api.factory import store_course
from worker.api.app import create_app
from worker.api.services import ApiServices

_server = fakeredis.FakeServer()
_upstream = FakeUpstream()
_services = ApiServices(
    settings=settings_for("cbfuzz:"),
    redis=fakeredis.FakeRedis(server=_server),
    connect=lambda: fakeredis.FakeRedis(server=_server),
    fetch=_upstream.fetch,
    derive=_upstream.derive,
    sender=FakeSender(),
    listen=False,
)


def _documented_course() -> CourseRecords:
    """The course the document's examples name, so example requests find real answers."""
    cat = Catalog(course=course("course-42", slug="cc-sixth-grade-math", subject="math"))
    own = {"course_id": "course-42"}
    unit = cat.unit("u1", slug="ratios", **own)
    lesson = cat.lesson("l1", unit, slug="intro-to-ratios", **own)
    cat.item(lesson, "r1", "Video", slug="ratio-video", xp=5, youtubeId="yt1")
    cat.item(lesson, "r2", "Quiz", slug="ratios-quiz", sort=1, xp=10, questionCount=4)
    holder = cat.unit("holder", **own)
    cat.item(holder, "r3", "CourseChallenge", slug="final", xp=50)
    return cat.records()


_upstream.courses["course-42"] = _documented_course()
store_course(_services.store, _upstream.courses["course-42"])

app = create_app(services=_services)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=bearer("all-token"), checks=CHECKS)
