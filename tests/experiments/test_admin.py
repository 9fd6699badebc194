"""The product team's admin, driven through Django's test client: create, every validation
message, start, ramp, stop, ship, the history panel, the audit log and the permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from apps.experiments.models import Experiment, RolloutEvent
from apps.registry.models import Alias, MLModel, ModelVersion
from tests.experiments.factories import MLModelFactory, ModelVersionFactory

ADD = "/admin/experiments/experiment/add/"
LIST = "/admin/experiments/experiment/"
KEY = "churn-v3-vs-v2"


@pytest.fixture
def product_user(db) -> User:
    user = User.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    user.groups.add(Group.objects.get(name="product team"))
    return user


@pytest.fixture
def admin_client(product_user) -> Client:
    client = Client()
    client.force_login(product_user)
    return client


def _version(version: str, model: str = "churn") -> int:
    return ModelVersion.objects.get(model__name=model, version=version).pk


def _management(prefix: str, total: int, initial: int = 0) -> dict[str, Any]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _add_data(**changes: Any) -> dict[str, Any]:
    """The add form as a product person fills it: two variants, metrics, one ramp."""
    data: dict[str, Any] = {
        "key": KEY,
        "model": str(MLModel.objects.get(name="churn").pk),
        "owner": "growth",
        "description": "v3 against v2",
        "hypothesis": "v3 lifts clicks",
        "coverage": "1",
        "alpha": "0.05",
        "mde": "0.05",
        "breakdown_attributes": "country",
        **_management("variants", 2),
        "variants-0-key": "control",
        "variants-0-model_version": str(_version("2")),
        "variants-0-weight": "0.5",
        "variants-0-is_control": "on",
        "variants-1-key": "treatment",
        "variants-1-model_version": str(_version("3")),
        "variants-1-weight": "0.5",
        **_management("targeting", 1),
        "targeting-0-attribute": "country",
        "targeting-0-values": "DE,FR",
        **_management("metrics", 2),
        "metrics-0-key": "click",
        "metrics-0-type": "binomial",
        "metrics-0-role": "primary",
        "metrics-1-key": "revenue",
        "metrics-1-type": "mean",
        "metrics-1-role": "guardrail",
        **_management("ramp", 2),
        "ramp-0-coverage": "0.1",
        "ramp-0-after": "0h",
        "ramp-1-coverage": "0.5",
        "ramp-1-after": "24h",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def _create(admin_client: Client, **changes: Any) -> Experiment:
    response = admin_client.post(ADD, _add_data(**changes))
    assert response.status_code == 302, response.content.decode()[:3000]
    return Experiment.objects.get(key=KEY)


def _act(admin_client: Client, experiment: Experiment, name: str, **extra: str):
    url = f"{LIST}{experiment.pk}/do/{name}/"
    page = admin_client.get(url)
    assert page.status_code == 200
    return admin_client.post(url, {"confirm": "yes", **extra})


@pytest.mark.django_db
def test_admin_add__valid_page__creates_experiment_with_inlines_and_event(admin_client, churn):
    # When
    experiment = _create(admin_client)
    # Then
    assert experiment.status == "draft"
    assert experiment.control == "control"
    assert [(v.key, v.weight) for v in experiment.variants.all()] == [
        ("control", 0.5),
        ("treatment", 0.5),
    ]
    assert [(t.attribute, t.values) for t in experiment.targeting.all()] == [
        ("country", ["DE", "FR"])
    ]
    assert [(m.key, m.role) for m in experiment.metrics.all()] == [
        ("click", "primary"),
        ("revenue", "guardrail"),
    ]
    assert [(s.coverage, str(s.after)) for s in experiment.ramp.all()] == [
        (0.1, "0:00:00"),
        (0.5, "1 day, 0:00:00"),
    ]
    event = RolloutEvent.objects.get()
    assert (event.type, event.actor) == ("experiment_created", "user:alice")
    assert event.state["primary_metric"] == "click"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants-1-weight": "0.4"}, "The weights add up to 0.9; they must add up to 1."),
        ({"variants-0-is_control": None}, "Tick exactly one variant as the control (0 ticked)."),
        ({"variants-1-is_control": "on"}, "Tick exactly one variant as the control (2 ticked)."),
        ({"variants-1-weight": "1.5"}, "A weight is between 0 and 1."),
        (
            {**_management("variants", 1), "variants-0-weight": "1"},
            "An experiment needs at least two variants.",
        ),
        ({"variants-1-key": "control"}, "Please correct the duplicate data for key"),
        (
            {"breakdown_attributes": "device"},
            "&#x27;device&#x27; is not a segment attribute of model &#x27;churn&#x27;",
        ),
        ({"metrics-1-role": "primary"}, "Only one metric can be the primary metric."),
        ({"metrics-1-key": "click"}, "Please correct the duplicate data for key"),
        ({"ramp-1-coverage": "0.05"}, "A ramp never lowers coverage"),
        ({"ramp-1-after": "soon"}, "Write a duration as &lt;number&gt;m, &lt;number&gt;h or"),
        ({"ramp-1-after": "0h"}, "Each step comes later than the one before"),
        ({"coverage": "1.5"}, "Coverage is a share of subjects, between 0 and 1."),
        ({"alpha": "2"}, "alpha is a significance level, strictly between 0 and 1."),
        ({"mde": "1e308"}, "mde is a relative lift greater than 0 and at most 100"),
        ({"variants-1-weight": "1e308"}, "A weight is between 0 and 1."),
        ({"ramp-1-after": "99999999999d"}, "A step&#x27;s after is from 0m to 365d."),
        ({"key": "bad key"}, "Use 1-100 letters, digits"),
        ({"targeting-0-values": ""}, "This field is required."),
    ],
)
def test_admin_add__rule_broken__message_shown_and_nothing_created(
    admin_client, churn, changes, message
):
    # When
    response = admin_client.post(ADD, _add_data(**changes))
    # Then
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Experiment.objects.count() == 0
    assert RolloutEvent.objects.count() == 0


@pytest.mark.django_db
def test_admin_add__version_of_another_model__message_on_the_row(admin_client, churn):
    # Given
    ModelVersionFactory(model=MLModelFactory(name="fraud"), version="9")
    other = _version("9", model="fraud")
    # When
    response = admin_client.post(ADD, _add_data(**{"variants-1-model_version": str(other)}))
    # Then
    assert response.status_code == 200
    assert (
        "Version &#x27;9&#x27; belongs to model &#x27;fraud&#x27;, not to &#x27;churn&#x27;."
        in response.content.decode()
    )
    assert Experiment.objects.count() == 0


@pytest.mark.django_db
def test_admin_add__key_taken__message(admin_client, churn):
    _create(admin_client)
    response = admin_client.post(ADD, _add_data())
    assert response.status_code == 200
    assert "An experiment with this key already exists" in response.content.decode()
    assert Experiment.objects.count() == 1


def _change_data(experiment: Experiment, **changes: Any) -> dict[str, Any]:
    """The change form of a stored draft as the page would post it back."""
    data: dict[str, Any] = {
        "model": str(experiment.model_id),
        "owner": experiment.owner,
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "coverage": str(experiment.coverage),
        "alpha": str(experiment.alpha),
        "mde": str(experiment.mde),
        "breakdown_attributes": ",".join(experiment.breakdown_attributes),
    }
    variants = list(experiment.variants.all())
    data.update(_management("variants", len(variants), len(variants)))
    for i, v in enumerate(variants):
        data.update(
            {
                f"variants-{i}-id": str(v.pk),
                f"variants-{i}-experiment": str(experiment.pk),
                f"variants-{i}-key": v.key,
                f"variants-{i}-model_version": str(v.model_version_id),
                f"variants-{i}-weight": str(v.weight),
            }
        )
        if v.key == experiment.control:
            data[f"variants-{i}-is_control"] = "on"
    for prefix, rows, fields in (
        ("targeting", list(experiment.targeting.all()), ("attribute", "values")),
        ("metrics", list(experiment.metrics.all()), ("key", "type", "role")),
        ("ramp", list(experiment.ramp.all()), ("coverage", "after")),
    ):
        data.update(_management(prefix, len(rows), len(rows)))
        for i, row in enumerate(rows):
            data[f"{prefix}-{i}-id"] = str(row.pk)
            data[f"{prefix}-{i}-experiment"] = str(experiment.pk)
            for name in fields:
                value = getattr(row, name)
                if name == "values":
                    value = ",".join(value)
                elif name == "after":
                    value = f"{int(value.total_seconds() // 3600)}h"
                data[f"{prefix}-{i}-{name}"] = str(value)
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


@pytest.mark.django_db
def test_admin_change__draft_weights_edited__saved_with_diff_event(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    url = f"{LIST}{experiment.pk}/change/"
    assert admin_client.get(url).status_code == 200
    # When
    response = admin_client.post(
        url, _change_data(experiment, **{"variants-0-weight": "0.3", "variants-1-weight": "0.7"})
    )
    # Then
    assert response.status_code == 302
    assert list(experiment.variants.values_list("weight", flat=True)) == [0.3, 0.7]
    event = RolloutEvent.objects.filter(type="experiment_updated").get()
    assert (event.actor, list(event.diff)) == ("user:alice", ["variants"])


@pytest.mark.django_db
def test_admin_actions__start_ramp_raise_stop__each_confirmed_and_recorded(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    # When started (confirmation page first)
    page = admin_client.get(f"{LIST}{experiment.pk}/do/start/")
    assert "Start (or resume) this experiment?" in page.content.decode()
    assert Experiment.objects.get().status == "draft"
    assert _act(admin_client, experiment, "start").status_code == 302
    # Then it runs at the ramp's opening coverage
    experiment.refresh_from_db()
    assert (experiment.status, experiment.coverage) == ("running", 0.1)
    # When the ramp is advanced by hand
    _act(admin_client, experiment, "advance")
    experiment.refresh_from_db()
    assert experiment.coverage == 0.5
    # When coverage is raised on the page, and then lowered
    url = f"{LIST}{experiment.pk}/change/"
    raised = admin_client.post(url, _change_data(experiment, coverage="0.8"))
    assert raised.status_code == 302
    experiment.refresh_from_db()
    lowered = admin_client.post(url, _change_data(experiment, coverage="0.2"))
    assert "Coverage cannot decrease while the experiment runs (it is 0.8)" in (
        lowered.content.decode()
    )
    # When stopped
    _act(admin_client, experiment, "stop")
    # Then
    experiment.refresh_from_db()
    assert (experiment.status, experiment.coverage) == ("stopped", 0.8)
    assert list(RolloutEvent.objects.order_by("seq").values_list("type", "actor")) == [
        ("experiment_created", "user:alice"),
        ("experiment_started", "user:alice"),
        ("experiment_ramp_advanced", "user:alice"),
        ("experiment_coverage_raised", "user:alice"),
        ("experiment_stopped", "user:alice"),
    ]


@pytest.mark.django_db
def test_admin_change__running__inlines_read_only(admin_client, churn):
    experiment = _create(admin_client)
    _act(admin_client, experiment, "start")
    page = admin_client.get(f"{LIST}{experiment.pk}/change/").content.decode()
    assert 'name="variants-0-weight"' not in page
    assert 'name="coverage"' in page
    assert 'name="key"' not in page


@pytest.mark.django_db
def test_admin_action__restart_stopped__error_message_and_no_event(admin_client, churn):
    experiment = _create(admin_client)
    _act(admin_client, experiment, "stop")
    response = admin_client.post(
        f"{LIST}{experiment.pk}/do/start/", {"confirm": "yes"}, follow=True
    )
    assert "is stopped; a stopped experiment is never restarted." in response.content.decode()
    assert RolloutEvent.objects.count() == 2


@pytest.mark.django_db
def test_admin_ship__variant_chosen__stopped_and_production_moved(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    _act(admin_client, experiment, "start")
    page = admin_client.get(f"{LIST}{experiment.pk}/do/ship/").content.decode()
    assert '<option value="treatment">treatment (version 3)</option>' in page
    # When
    response = _act(admin_client, experiment, "ship", variant="treatment")
    # Then
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.status, experiment.shipped_variant) == ("stopped", "treatment")
    alias = Alias.objects.get(model__name="churn", name="production")
    assert alias.version.version == "3"


@pytest.mark.django_db
def test_admin_change_page__history_panel__lists_every_change(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    _act(admin_client, experiment, "start")
    _act(admin_client, experiment, "pause")
    # When
    page = admin_client.get(f"{LIST}{experiment.pk}/change/").content.decode()
    # Then
    assert page.count("<tr><td>") == 3
    assert "<td>Created</td>" in page
    assert "<td>Started</td>" in page
    assert "<td>Paused</td>" in page
    assert "status: running → paused" in page
    assert "user:alice" in page
    assert ">Resume</a>" in page


@pytest.mark.django_db
def test_admin_list__filters_search_and_bulk_action_with_confirmation(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    # When
    listing = admin_client.get(LIST).content.decode()
    found = admin_client.get(LIST, {"q": "v3 against"}).content.decode()
    missing = admin_client.get(LIST, {"q": "nothing-like-it"}).content.decode()
    running = admin_client.get(LIST, {"status__exact": "running"}).content.decode()
    # Then
    assert "control (control) 50% v2, treatment 50% v3" in listing
    assert KEY in found
    assert KEY not in missing
    assert KEY not in running
    # When the bulk start is asked, then confirmed
    ask = {"action": "start_selected", "_selected_action": [str(experiment.pk)]}
    confirm_page = admin_client.post(LIST, ask)
    assert "Start (or resume) this experiment?" in confirm_page.content.decode()
    assert Experiment.objects.get().status == "draft"
    admin_client.post(LIST, {**ask, "confirm": "yes"})
    assert Experiment.objects.get().status == "running"


@pytest.mark.django_db
def test_admin_audit_log__lists_changes_read_only(admin_client, churn):
    # Given
    experiment = _create(admin_client)
    _act(admin_client, experiment, "start")
    event = RolloutEvent.objects.order_by("-seq")[0]
    # When
    listing = admin_client.get("/admin/experiments/rolloutevent/").content.decode()
    detail = admin_client.get(f"/admin/experiments/rolloutevent/{event.pk}/change/")
    tampering = admin_client.post(f"/admin/experiments/rolloutevent/{event.pk}/change/", {})
    deleting = admin_client.post(
        f"/admin/experiments/rolloutevent/{event.pk}/delete/", {"post": "yes"}
    )
    # Then
    assert "Rollout audit log" in listing
    assert "status: draft → running" in listing
    assert detail.status_code == 200
    assert tampering.status_code == 403
    assert deleting.status_code == 403
    assert RolloutEvent.objects.count() == 2


@pytest.mark.django_db
def test_product_team__api_keys_and_deletion__forbidden(admin_client, churn):
    experiment = _create(admin_client)
    assert admin_client.get("/admin/accounts/apikey/").status_code == 403
    assert admin_client.get("/admin/accounts/apikey/add/").status_code == 403
    assert admin_client.get(f"{LIST}{experiment.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/experiments/exposure/").status_code == 200
    assert admin_client.get("/admin/registry/mlmodel/").status_code == 200


@pytest.mark.django_db
def test_staff_without_group__experiments__forbidden(churn):
    client = Client()
    client.force_login(User.objects.create_user("eve", password="pw-eve-12345", is_staff=True))
    assert client.get(LIST).status_code == 403
    assert client.post(ADD, _add_data()).status_code == 403
    assert Experiment.objects.count() == 0


@pytest.mark.django_db
def test_admin_add_page__get__shows_inlines_with_two_variant_rows(admin_client, churn):
    page = admin_client.get(ADD)
    assert page.status_code == 200
    content = page.content.decode()
    assert 'name="variants-TOTAL_FORMS" value="2"' in content
    assert 'name="variants-0-is_control"' in content
    assert 'name="ramp-TOTAL_FORMS"' in content
    assert "churn@3" in content
