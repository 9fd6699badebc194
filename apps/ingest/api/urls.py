"""Routes of the ingest app."""

urlpatterns: list[object] = []
