"""Routes of monitoring: rules, alerts and retraining jobs."""

from django.urls import path

from apps.monitoring.api import views

urlpatterns = [
    path("rules", views.RuleListView.as_view(), name="monitoring-rules"),
    path("rules/<str:rule_id>", views.RuleDetailView.as_view(), name="monitoring-rule"),
    path("alerts", views.AlertListView.as_view(), name="monitoring-alerts"),
    path(
        "alerts/<str:alert_id>/acknowledge",
        views.AlertAcknowledgeView.as_view(),
        name="monitoring-alert-acknowledge",
    ),
    path("retraining-jobs", views.JobListView.as_view(), name="monitoring-jobs"),
    path("retraining-jobs/<str:job_id>", views.JobDetailView.as_view(), name="monitoring-job"),
    path(
        "retraining-jobs/<str:job_id>/claim",
        views.JobClaimView.as_view(),
        name="monitoring-job-claim",
    ),
    path(
        "retraining-jobs/<str:job_id>/complete",
        views.JobCompleteView.as_view(),
        name="monitoring-job-complete",
    ),
    path(
        "retraining-jobs/<str:job_id>/fail",
        views.JobFailView.as_view(),
        name="monitoring-job-fail",
    ),
]
