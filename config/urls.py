"""URL routes: the v1 API, the operations endpoints, the schema and the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import views as core_views
from apps.core.query import Choice, checked
from apps.experiments.api import views as experiment_views

# Django tries routes in order: the hot endpoints (assignments, then ingestion) come first.
# POST /api/v1/assignments, the hottest, is a top-level route: every include() level a
# request passes through costs it a resolver walk (measured: tens of µs per request).
api_v1 = [
    path("", include("apps.experiments.api.urls")),
    path("", include("apps.ingest.api.urls")),
    path("", include("apps.events.api.urls")),
    path("", include("apps.registry.api.urls")),
    path("", include("apps.analytics.api.urls")),
    path("", include("apps.monitoring.api.urls")),
]

urlpatterns = [
    path("api/v1/assignments", experiment_views.AssignmentView.as_view(), name="assignments"),
    path("api/v1/", include(api_v1)),
    path(
        "api/schema/",
        checked(SpectacularAPIView.as_view(), Choice("format", choices=("json", "yaml"))),
        name="schema",
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # The operations endpoints take no query parameter: one given is a 400, as on the API.
    path("healthz", checked(core_views.healthz), name="healthz"),
    path("readyz", checked(core_views.readyz), name="readyz"),
    path("metrics", checked(core_views.metrics), name="metrics"),
    path("admin/", admin.site.urls),
]

handler400 = "apps.core.errors.bad_request"
handler403 = "apps.core.errors.permission_denied"
handler404 = "apps.core.errors.page_not_found"
handler500 = "apps.core.errors.server_error"
