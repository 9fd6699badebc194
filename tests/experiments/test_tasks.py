"""The ramp advancer task: applies due steps, and running it twice has no extra effect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.experiments.models import Experiment, RampStep, RolloutEvent
from apps.experiments.tasks import advance_ramps


@pytest.mark.django_db
def test_advance_ramps__due_step_run_twice__applied_once(make_experiment):
    # Given a running ramp whose second step became due (its start moved back two days)
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.4, "after": "1d"}])
    Experiment.objects.update(started_at=timezone.now() - timedelta(days=2))
    # When
    first = advance_ramps.apply().get()
    second = advance_ramps.apply().get()
    # Then
    assert (first, second) == (1, 0)
    assert Experiment.objects.get().coverage == 0.4
    assert RampStep.objects.filter(applied_at__isnull=True).count() == 0
    assert RolloutEvent.objects.filter(type="experiment_ramp_advanced").count() == 1


@pytest.mark.django_db
def test_advance_ramps__nothing_due__no_event(make_experiment):
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.4, "after": "1d"}])
    assert advance_ramps.apply().get() == 0
    assert RolloutEvent.objects.filter(type="experiment_ramp_advanced").count() == 0
