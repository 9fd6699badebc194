"""Experiment use cases: validation, status machine, ramp, ship, and the events they append."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.experiments import services
from apps.experiments.models import ConfigVersion, Experiment, RolloutEvent
from apps.experiments.validation import parse_payload
from apps.registry.models import Alias, RegistryEvent
from tests.experiments.conftest import ACTOR
from tests.experiments.factories import MLModelFactory, ModelVersionFactory


def _events(key: str) -> list[str]:
    return list(
        RolloutEvent.objects.filter(experiment__key=key)
        .order_by("seq")
        .values_list("type", flat=True)
    )


def _details(error: pytest.ExceptionInfo) -> list[tuple[str, str]]:
    return [(detail["field"], detail["message"]) for detail in error.value.details]


@pytest.mark.django_db
def test_experiment_create__valid__draft_with_event_carrying_full_state(churn, payload):
    # When
    experiment = services.experiment_create(spec=parse_payload(payload), actor=ACTOR)
    # Then
    assert experiment.status == "draft"
    assert len(experiment.salt) == 32
    event = RolloutEvent.objects.get(experiment=experiment)
    assert event.type == "experiment_created"
    assert event.actor == ACTOR
    assert event.state == services.experiment_state(experiment)
    assert event.state["variants"] == payload["variants"]
    assert event.state["targeting"] == {}
    assert event.state["coverage"] == 1.0
    assert event.state["alpha"] == 0.05
    assert event.state["mde"] == 0.05
    assert event.diff["key"] == {"from": None, "to": "churn-v3-vs-v2"}
    assert ConfigVersion.objects.get().version >= 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {
                "variants": [
                    {"key": "control", "model_version": "2", "weight": 0.5},
                    {"key": "treatment", "model_version": "3", "weight": 0.4},
                ]
            },
            [("variants", "The weights add up to 0.9; they must add up to 1.")],
        ),
        (
            {"variants": [{"key": "control", "model_version": "2", "weight": 1.0}]},
            [("variants", "An experiment needs at least two variants.")],
        ),
        (
            {"control": "baseline"},
            [
                (
                    "control",
                    "Choose exactly one control: the key of one of the variants"
                    " (control, treatment).",
                )
            ],
        ),
        (
            {
                "variants": [
                    {"key": "control", "model_version": "2", "weight": 0.5},
                    {"key": "treatment", "model_version": "9", "weight": 0.5},
                ]
            },
            [("variants.1.model_version", "'9' is not a registered version of model 'churn'.")],
        ),
        (
            {
                "variants": [
                    {"key": "control", "model_version": "2", "weight": 1.5},
                    {"key": "treatment", "model_version": "3", "weight": -0.5},
                ]
            },
            [
                ("variants.0.weight", "A weight is between 0 and 1."),
                ("variants.1.weight", "A weight is between 0 and 1."),
            ],
        ),
        (
            {
                "metrics": [{"key": "click", "type": "binomial"}, {"key": "click", "type": "mean"}],
                "guardrail_metrics": [],
            },
            [("metrics.1.key", "The metric 'click' is listed twice.")],
        ),
        (
            {"primary_metric": "revenue2"},
            [("primary_metric", "The primary metric 'revenue2' is not a metric above.")],
        ),
        (
            {"guardrail_metrics": ["latency"]},
            [
                (
                    "guardrail_metrics.0",
                    "The guardrail metric 'latency' is not one of the experiment's metrics.",
                )
            ],
        ),
        (
            {"breakdown_attributes": ["device"]},
            [
                (
                    "breakdown_attributes.0",
                    "'device' is not a segment attribute of model 'churn'"
                    " (its segment attributes: country, plan).",
                )
            ],
        ),
        (
            {"model": "fraud"},
            [("model", "No model named 'fraud' is registered.")],
        ),
        (
            {"ramp": [{"coverage": 0.5}, {"coverage": 0.2, "after": "24h"}]},
            [
                (
                    "ramp.1.coverage",
                    "A ramp never lowers coverage: each step's coverage is at"
                    " least the previous step's.",
                )
            ],
        ),
        (
            {
                "ramp": [{"coverage": 0.1, "after": "24h"}, {"coverage": 0.2, "after": "1d"}],
                "coverage": 0.05,
            },
            [("ramp.1.after", "Each step comes later than the one before (1d is not after 1d).")],
        ),
        ({"alpha": 1.5}, [("alpha", "alpha is a significance level, strictly between 0 and 1.")]),
        ({"coverage": 2}, [("coverage", "Coverage is a share of subjects, between 0 and 1.")]),
        (
            {"key": "bad key!"},
            [
                (
                    "key",
                    "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit.",
                )
            ],
        ),
    ],
)
def test_experiment_create__rule_broken__400_with_message_and_nothing_stored(
    churn, payload, changes, expected
):
    # Given
    payload.update(changes)
    # When
    with pytest.raises(ValidationFailed) as error:
        services.experiment_create(spec=parse_payload(payload), actor=ACTOR)
    # Then
    assert _details(error) == expected
    assert Experiment.objects.count() == 0
    assert RolloutEvent.objects.count() == 0


@pytest.mark.django_db
def test_experiment_create__version_of_another_model__rejected(churn, payload):
    # Given a version "3" of another model only (churn has 1, 2, 3: use a version churn lacks)
    other = MLModelFactory(name="fraud")
    ModelVersionFactory(model=other, version="7")
    payload["variants"][1]["model_version"] = "7"
    # When
    with pytest.raises(ValidationFailed) as error:
        services.experiment_create(spec=parse_payload(payload), actor=ACTOR)
    # Then
    assert _details(error) == [
        ("variants.1.model_version", "'7' is not a registered version of model 'churn'.")
    ]


@pytest.mark.django_db
def test_experiment_create__key_taken__conflict_and_one_experiment(make_experiment, payload):
    # Given
    make_experiment()
    # When
    with pytest.raises(Conflict):
        services.experiment_create(spec=parse_payload(payload), actor=ACTOR)
    # Then
    assert Experiment.objects.count() == 1
    assert RolloutEvent.objects.count() == 1


@pytest.mark.django_db
def test_experiment_update__draft__replaces_config_and_records_diff(make_experiment, payload):
    # Given
    make_experiment()
    payload["variants"][0]["weight"] = 0.2
    payload["variants"][1]["weight"] = 0.8
    payload["targeting"] = {"country": ["DE", "FR"]}
    # When
    experiment = services.experiment_update(
        key="churn-v3-vs-v2", spec=parse_payload(payload), actor="user:bob"
    )
    # Then
    assert [(v.key, v.weight) for v in experiment.variants.all()] == [
        ("control", 0.2),
        ("treatment", 0.8),
    ]
    event = RolloutEvent.objects.filter(type="experiment_updated").get()
    assert event.actor == "user:bob"
    assert set(event.diff) == {"variants", "targeting"}
    assert event.diff["targeting"] == {"from": {}, "to": {"country": ["DE", "FR"]}}


@pytest.mark.django_db
def test_experiment_update__nothing_changed__no_event(make_experiment, payload):
    make_experiment()
    services.experiment_update(key="churn-v3-vs-v2", spec=parse_payload(payload), actor=ACTOR)
    assert _events("churn-v3-vs-v2") == ["experiment_created"]


@pytest.mark.django_db
def test_experiment_update__running_weights_changed__conflict_and_unchanged(
    make_experiment, payload
):
    # Given
    make_experiment(start=True)
    payload["variants"][0]["weight"] = 0.1
    payload["variants"][1]["weight"] = 0.9
    # When
    with pytest.raises(Conflict) as error:
        services.experiment_update(key="churn-v3-vs-v2", spec=parse_payload(payload), actor=ACTOR)
    # Then
    assert _details(error) == [("variants", "Fixed once the experiment has started.")]
    assert list(Experiment.objects.get().variants.values_list("weight", flat=True)) == [0.5, 0.5]
    assert _events("churn-v3-vs-v2") == ["experiment_created", "experiment_started"]


@pytest.mark.django_db
def test_experiment_update__running_coverage_raised__applied_with_event(make_experiment, payload):
    # Given
    make_experiment(start=True, coverage=0.2)
    payload["coverage"] = 0.6
    # When
    experiment = services.experiment_update(
        key="churn-v3-vs-v2", spec=parse_payload(payload), actor=ACTOR
    )
    # Then
    assert experiment.coverage == 0.6
    event = RolloutEvent.objects.filter(type="experiment_coverage_raised").get()
    assert event.diff == {"coverage": {"from": 0.2, "to": 0.6}}


@pytest.mark.django_db
def test_experiment_update__running_coverage_lowered__conflict(make_experiment, payload):
    make_experiment(start=True, coverage=0.5)
    payload["coverage"] = 0.4
    with pytest.raises(Conflict) as error:
        services.experiment_update(key="churn-v3-vs-v2", spec=parse_payload(payload), actor=ACTOR)
    assert error.value.message == (
        "Coverage cannot decrease while the experiment runs (0.5 → 0.4): subjects already in"
        " the experiment would drop out."
    )
    assert Experiment.objects.get().coverage == 0.5


@pytest.mark.django_db
def test_status_machine__start_pause_resume_stop__events_in_order(make_experiment):
    # Given
    make_experiment()
    key = "churn-v3-vs-v2"
    # When
    services.experiment_start(key=key, actor=ACTOR)
    services.experiment_pause(key=key, actor=ACTOR)
    services.experiment_start(key=key, actor=ACTOR)
    experiment = services.experiment_stop(key=key, actor=ACTOR)
    # Then
    assert experiment.status == "stopped"
    assert experiment.stopped_at is not None
    assert _events(key) == [
        "experiment_created",
        "experiment_started",
        "experiment_paused",
        "experiment_resumed",
        "experiment_stopped",
    ]
    last = RolloutEvent.objects.order_by("-seq")[0]
    assert last.diff["status"] == {"from": "running", "to": "stopped"}
    assert last.state["status"] == "stopped"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("steps", "action", "message"),
    [
        ([], "pause", "Only a running experiment can be paused; 'churn-v3-vs-v2' is draft."),
        (["start"], "start", "'churn-v3-vs-v2' is already running."),
        (
            ["stop"],
            "start",
            "'churn-v3-vs-v2' is stopped; a stopped experiment is never restarted.",
        ),
        (["stop"], "stop", "'churn-v3-vs-v2' is already stopped."),
    ],
)
def test_status_machine__transition_not_allowed__conflict_and_no_event(
    make_experiment, steps, action, message
):
    # Given
    make_experiment()
    key = "churn-v3-vs-v2"
    for step in steps:
        getattr(services, f"experiment_{step}")(key=key, actor=ACTOR)
    before = _events(key)
    # When
    with pytest.raises(Conflict) as error:
        getattr(services, f"experiment_{action}")(key=key, actor=ACTOR)
    # Then
    assert error.value.message == message
    assert _events(key) == before


@pytest.mark.django_db
def test_experiment_start__unknown_key__not_found():
    with pytest.raises(NotFound):
        services.experiment_start(key="nope", actor=ACTOR)


@pytest.mark.django_db
def test_experiment_start__ramp_opening_step__sets_starting_coverage(make_experiment):
    # Given
    make_experiment(ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}])
    # When
    experiment = services.experiment_start(key="churn-v3-vs-v2", actor=ACTOR)
    # Then
    assert experiment.coverage == 0.1
    steps = list(experiment.ramp.all())
    assert steps[0].applied_at is not None
    assert steps[1].applied_at is None


@pytest.mark.django_db
def test_ramp_advance_due__step_due__applied_once_even_when_run_twice(make_experiment):
    # Given a started ramp whose second step is due
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}])
    later = timezone.now() + timedelta(hours=25)
    # When
    first = services.ramp_advance_due(now=later)
    second = services.ramp_advance_due(now=later)
    # Then
    assert (first, second) == (1, 0)
    experiment = Experiment.objects.get()
    assert experiment.coverage == 0.5
    event = RolloutEvent.objects.filter(type="experiment_ramp_advanced").get()
    assert event.actor == "system:ramp"
    assert event.diff["coverage"] == {"from": 0.1, "to": 0.5}


@pytest.mark.django_db
def test_ramp_advance_due__not_yet_due_or_paused__nothing(make_experiment):
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}])
    assert services.ramp_advance_due(now=timezone.now() + timedelta(hours=23)) == 0
    services.experiment_pause(key="churn-v3-vs-v2", actor=ACTOR)
    assert services.ramp_advance_due(now=timezone.now() + timedelta(hours=25)) == 0
    assert Experiment.objects.get().coverage == 0.1


@pytest.mark.django_db
def test_experiment_ramp_advance__by_hand__next_step_now_then_conflict(make_experiment):
    # Given
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}])
    # When
    experiment = services.experiment_ramp_advance(key="churn-v3-vs-v2", actor=ACTOR)
    # Then
    assert experiment.coverage == 0.5
    with pytest.raises(Conflict) as error:
        services.experiment_ramp_advance(key="churn-v3-vs-v2", actor=ACTOR)
    assert error.value.message == "'churn-v3-vs-v2' has no ramp step left."


@pytest.mark.django_db
def test_experiment_ramp_advance__after_explicit_raise__never_lowers(make_experiment, payload):
    # Given coverage raised by hand above the next step
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}])
    payload["ramp"] = [{"coverage": 0.1}, {"coverage": 0.5, "after": "24h"}]
    payload["coverage"] = 0.8
    services.experiment_update(key="churn-v3-vs-v2", spec=parse_payload(payload), actor=ACTOR)
    # When
    experiment = services.experiment_ramp_advance(key="churn-v3-vs-v2", actor=ACTOR)
    # Then
    assert experiment.coverage == 0.8


@pytest.mark.django_db
def test_experiment_ship__running__stops_and_moves_production_in_one_go(make_experiment):
    # Given
    make_experiment(start=True)
    # When
    experiment = services.experiment_ship(key="churn-v3-vs-v2", variant="treatment", actor=ACTOR)
    # Then
    assert experiment.status == "stopped"
    assert experiment.shipped_variant == "treatment"
    alias = Alias.objects.select_related("version").get(model__name="churn", name="production")
    assert alias.version.version == "3"
    assert _events("churn-v3-vs-v2")[-1] == "experiment_shipped"
    moved = RegistryEvent.objects.filter(type="alias_moved").get()
    assert moved.actor == ACTOR
    shipped = RolloutEvent.objects.filter(type="experiment_shipped").get()
    assert shipped.diff["status"] == {"from": "running", "to": "stopped"}
    assert shipped.diff["shipped_variant"] == {"from": None, "to": "treatment"}


@pytest.mark.django_db
def test_experiment_ship__unknown_variant__400_and_nothing_changes(make_experiment):
    make_experiment(start=True)
    with pytest.raises(ValidationFailed):
        services.experiment_ship(key="churn-v3-vs-v2", variant="nope", actor=ACTOR)
    assert Experiment.objects.get().status == "running"
    assert not Alias.objects.exists()
    assert _events("churn-v3-vs-v2") == ["experiment_created", "experiment_started"]


@pytest.mark.django_db
def test_experiment_ship__draft__conflict(make_experiment):
    make_experiment()
    with pytest.raises(Conflict):
        services.experiment_ship(key="churn-v3-vs-v2", variant="treatment", actor=ACTOR)
    assert not Alias.objects.exists()
