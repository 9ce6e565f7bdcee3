"""The contract as an integrator uses it (run by scripts/client-test, inside .venv-client/).

Generates a Python client from openapi.yaml with openapi-python-client and runs a short
flow with it against a live `surveyd serve`: create a survey, send it, read its report,
and handle the errors as typed problems (404, 400 with its field errors, 401, 403, 422).
Every check prints `ok` or `FAIL` with the reason; the last line is `N passed, N failed`,
and the exit status is 1 when any check failed.

Environment (scripts/client-test sets it): SURVEYD_URL, SURVEYD_TOKEN (a write token),
SURVEYD_ADMIN_TOKEN, CLIENT_OPENAPI (the contract to generate from), CLIENT_OUT (a
folder, emptied: the client is generated into CLIENT_OUT/surveyd_client).
"""

import datetime
import importlib
import os
import random
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

URL = os.environ["SURVEYD_URL"]
TOKEN = os.environ["SURVEYD_TOKEN"]
ADMIN_TOKEN = os.environ["SURVEYD_ADMIN_TOKEN"]
OPENAPI = os.environ["CLIENT_OPENAPI"]
OUT = Path(os.environ["CLIENT_OUT"])
PACKAGE = "surveyd_client"

passed = 0
failed = 0
state = {}


def check(name):
    """Runs the decorated function at once as one check, counting it."""

    def run(function):
        global passed, failed
        try:
            function()
        except Exception as error:  # noqa: BLE001 (every failure is reported, then counted)
            failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}")
            if not isinstance(error, AssertionError):
                traceback.print_exception(error, limit=2, chain=False, file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}")
        return function

    return run


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_problem(response, status, field=None):
    """A documented error: parsed as the generated Problem, its status the HTTP status."""
    from surveyd_client.models import Problem

    expect(response.status_code == status, f"status {response.status_code}, not {status}: {response.content[:300]!r}")
    problem = response.parsed
    expect(isinstance(problem, Problem), f"parsed as {type(problem).__name__}, not Problem")
    expect(problem.status == status, f"problem status {problem.status}, not {status}")
    expect(response.headers.get("content-type", "").startswith("application/problem+json"), "not problem+json")
    if field is not None:
        fields = [error.field for error in (problem.errors or [])]
        expect(field in fields, f"errors name {fields}, not {field}")
    return problem


# ─── the client ───────────────────────────────────────────────────────────────


@check("openapi-python-client generates the client with no warning")
def generate():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    result = subprocess.run(
        ["openapi-python-client", "generate", "--path", OPENAPI, "--meta", "none",
         "--output-path", str(OUT / PACKAGE)],
        capture_output=True, text=True, check=False,
    )
    output = (result.stdout + result.stderr).strip()
    (OUT / "generate.log").write_text(output + "\n")
    sys.path.insert(0, str(OUT))  # what was generated runs the flow even if this check fails
    expect(result.returncode == 0, f"exit {result.returncode}:\n{output}")
    # On success it prints one line, "Generating <path>"; anything more is a warning
    # (an operation or a response it could not read and left out, or a post hook skipped).
    extra = [line for line in output.splitlines() if line.strip() and not line.startswith("Generating ")]
    expect(not extra, f"it printed {len(extra)} more lines, the first:\n" + "\n".join(extra[:12]))
    importlib.import_module(PACKAGE)


@check("every error response of every operation is typed as Problem")
def typed_errors():
    # The generated parser of each operation has a branch per documented status; an
    # error response the generator could not read has none (it used to drop all of them).
    untyped = []
    for module in sorted((OUT / PACKAGE / "api").glob("*/*.py")):
        # The pages an e-mail's links open answer a person in HTML, errors too, not a program.
        if module.name == "__init__.py" or module.parent.name == "response_links":
            continue
        text = module.read_text()
        parse = text[text.index("def _parse_response"):text.index("def _build_response")]
        statuses = re.findall(r"response\.status_code == (\d{3})", parse)
        errors = [s for s in statuses if int(s) >= 400]
        if not errors:
            untyped.append(f"{module.parent.name}/{module.stem}: no error status")
        for status in errors:
            if f"response_{status} = Problem.from_dict(" not in parse:
                untyped.append(f"{module.parent.name}/{module.stem}: {status} is not a Problem")
    expect(not untyped, "; ".join(untyped))


def client():
    from surveyd_client import AuthenticatedClient

    # Any status the contract does not document raises errors.UnexpectedStatus.
    return AuthenticatedClient(base_url=URL, token=TOKEN, raise_on_unexpected_status=True)


# ─── the flow ─────────────────────────────────────────────────────────────────


@check("createSurvey: 201, a typed Survey")
def create_survey():
    from surveyd_client.api.surveys import create_survey
    from surveyd_client.models import NewQuestion, NewSurvey, Survey

    body = NewSurvey(
        name="waffles",
        interaction_type="general",
        questions=[NewQuestion(body="On a scale from 0-10, how likely are you to recommend our waffles?", language="en-gb")],
    )
    response = create_survey.sync_detailed(client=client(), body=body)
    expect(response.status_code == 201, f"status {response.status_code}: {response.content[:300]!r}")
    survey = response.parsed
    expect(isinstance(survey, Survey), f"parsed as {type(survey).__name__}")
    expect(isinstance(survey.id, int) and survey.id > 0, f"id {survey.id!r}")
    expect(survey.questions[0].language == "en-GB", f"language {survey.questions[0].language!r}, not canonical")
    state["survey"] = survey


@check("getSurvey: the same survey back")
def get_survey():
    from surveyd_client.api.surveys import get_survey

    survey = get_survey.sync(state["survey"].id, client=client())
    expect(survey == state["survey"], f"{survey} != {state['survey']}")


@check("sendSurvey: 202, a typed QueuedResult")
def send_survey():
    from surveyd_client.api.sending import send_survey
    from surveyd_client.models import Channel, QueuedResult, SendItem, SendRequest, SendResults

    destination = f"+3247{random.randint(1_000_000, 9_999_999)}"
    body = SendRequest(requests=[
        SendItem(channel=Channel.SMS, destination=destination, reference_id="customer-1",
                 segments=["gold"], language="en-GB"),
    ])
    response = send_survey.sync_detailed(state["survey"].id, client=client(), body=body,
                                         idempotency_key=f"client-test-{destination}")
    expect(response.status_code == 202, f"status {response.status_code}: {response.content[:300]!r}")
    results = response.parsed
    expect(isinstance(results, SendResults), f"parsed as {type(results).__name__}")
    expect(len(results.results) == 1, f"{len(results.results)} results")
    queued = results.results[0]
    expect(isinstance(queued, QueuedResult), f"result {queued!r}")
    expect(queued.status == "queued" and queued.reference_id == "customer-1", f"result {queued!r}")


@check("getSurveyReport: 200, a typed SurveyReport counting the request")
def survey_report():
    from surveyd_client.api.reports import get_survey_report
    from surveyd_client.models import SurveyReport, TimeZone

    response = get_survey_report.sync_detailed(state["survey"].id, client=client(), timezone=TimeZone("Europe/Brussels"),
                                               segments=["gold"])
    expect(response.status_code == 200, f"status {response.status_code}: {response.content[:300]!r}")
    report = response.parsed
    expect(isinstance(report, SurveyReport), f"parsed as {type(report).__name__}")
    expect(report.survey_id == state["survey"].id, f"surveyId {report.survey_id}")
    expect(isinstance(report.from_, datetime.datetime) and report.from_.utcoffset() is not None, f"from {report.from_!r}")
    expect(report.timezone == "Europe/Brussels" and report.segments == ["gold"], f"{report.timezone}, {report.segments}")
    expect(report.channel is None, f"channel {report.channel!r}")
    expect(report.response_statistics.total_requests == 1, f"{report.response_statistics}")


@check("getSurvey of an unknown id: 404 as a typed Problem")
def not_found():
    from surveyd_client.api.surveys import get_survey

    response = get_survey.sync_detailed(999_999_999_999, client=client())
    problem = expect_problem(response, 404)
    expect(problem.instance == "/survey/1.0.0/surveys/999999999999", f"instance {problem.instance!r}")


@check("createSurvey with a blank name: 400 as a typed Problem naming the field")
def bad_request():
    from surveyd_client.api.surveys import create_survey
    from surveyd_client.models import NewQuestion, NewSurvey

    body = NewSurvey(name="   ", interaction_type="general", questions=[NewQuestion(body="Score us?", language="en")])
    problem = expect_problem(create_survey.sync_detailed(client=client(), body=body), 400, field="name")
    expect(problem.type_ == "/problems/validation", f"type {problem.type_!r}")


@check("a wrong token: 401 as a typed Problem")
def unauthorized():
    from surveyd_client import AuthenticatedClient
    from surveyd_client.api.surveys import list_surveys

    wrong = AuthenticatedClient(base_url=URL, token="nps_live_" + "A" * 43, raise_on_unexpected_status=True)
    expect_problem(list_surveys.sync_detailed(client=wrong), 401)


@check("admin API: a company and a read token; the read token gets 403 as a typed Problem")
def read_token():
    from surveyd_client import AuthenticatedClient
    from surveyd_client.api.admin import create_company, create_token
    from surveyd_client.api.surveys import delete_survey, list_surveys
    from surveyd_client.models import CreatedCompany, CreatedToken, NewCompany, NewToken, TokenScope

    admin = AuthenticatedClient(base_url=URL, token=ADMIN_TOKEN, raise_on_unexpected_status=True)
    company = create_company.sync(client=admin, body=NewCompany(name="Client test read-only"))
    expect(isinstance(company, CreatedCompany), f"company {company!r}")
    token = create_token.sync(company.id, client=admin, body=NewToken(scope=TokenScope.READ))
    expect(isinstance(token, CreatedToken) and token.scope == TokenScope.READ, f"token {token!r}")
    reader = AuthenticatedClient(base_url=URL, token=token.token, raise_on_unexpected_status=True)
    expect(list_surveys.sync(client=reader) == [], "the new company has surveys")
    problem = expect_problem(delete_survey.sync_detailed(state["survey"].id, client=reader), 403)
    expect(problem.type_ == "/problems/insufficient-scope", f"type {problem.type_!r}")


# ─── report dates: what the contract allows, the server accepts (issue 12, item 10) ───


@check("report dates: the contract's pattern and the server agree at the bounds")
def report_dates():
    from surveyd_client.api.operations import get_open_apijson
    from surveyd_client.api.reports import get_survey_report
    from surveyd_client.models import SurveyReport, TimeZone

    document = get_open_apijson.sync(client=client()).to_dict()
    pattern = re.compile(document["components"]["schemas"]["ReportDate"]["pattern"])
    survey = state["survey"].id
    accepted = [  # (startDate, endDate, timezone): schema-valid and inside the reports' range
        ("1969-12-31T23:00-01:00", "1970-01-01T12:00Z", "UTC"),
        ("1970-01-01", "1970-01-02", "UTC"),
        ("1970-01-01T00:00Z", "1969-12-31", "Pacific/Honolulu"),
        ("8999-12-31", "9000-01-01T00:00:00Z", "UTC"),
        ("9000-01-01", "9000-01-01T00:00Z", "Asia/Tokyo"),
        ("2026-03-01T00:00:00.000+01:00", "2026-03-31", "Europe/Brussels"),
    ]
    refused = [  # (startDate, endDate, timezone, status, field): well-formed, outside the range
        ("1969-12-31T23:00Z", "1970-01-01T12:00Z", "UTC", 422, "startDate"),
        ("1970-01-01", "1970-01-02", "Europe/Brussels", 422, "startDate"),
        ("8999-12-31", "9000-01-01", "UTC", 422, "endDate"),
        ("1950-01-01", "1950-02-01", "UTC", 422, "startDate"),
        ("1899-12-01", "1899-12-31", "UTC", 400, "startDate"),
    ]
    wrong = []
    for start, end, zone in accepted:
        if not (pattern.match(start) and pattern.match(end)):
            wrong.append(f"{start} .. {end}: the pattern refuses it")
        response = get_survey_report.sync_detailed(survey, client=client(), start_date=start, end_date=end,
                                                   timezone=TimeZone(zone))
        if response.status_code != 200 or not isinstance(response.parsed, SurveyReport):
            wrong.append(f"{start} .. {end} in {zone}: {response.status_code} {response.content[:200]!r}")
    for start, end, zone, status, field in refused:
        if status == 400 and pattern.match(start):
            wrong.append(f"{start}: the pattern admits what the server cannot read")
        response = get_survey_report.sync_detailed(survey, client=client(), start_date=start, end_date=end,
                                                   timezone=TimeZone(zone))
        try:
            expect_problem(response, status, field=field)
        except AssertionError as error:
            wrong.append(f"{start} .. {end} in {zone}: {error}")
    expect(not wrong, "; ".join(wrong))


@check("deleteSurvey: 204, then getSurvey is a 404 Problem")
def delete():
    from surveyd_client.api.surveys import delete_survey, get_survey

    response = delete_survey.sync_detailed(state["survey"].id, client=client())
    expect(response.status_code == 204, f"status {response.status_code}: {response.content[:300]!r}")
    expect_problem(get_survey.sync_detailed(state["survey"].id, client=client()), 404)


@check("getOpenAPIYAML: the document as text")
def openapi_yaml():
    from surveyd_client.api.operations import get_open_apiyaml

    text = get_open_apiyaml.sync(client=client())
    expect(isinstance(text, str) and text.startswith("openapi: 3.1"), f"{str(text)[:60]!r}")


print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
