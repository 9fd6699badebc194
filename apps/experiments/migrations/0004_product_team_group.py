"""The "product team" group: manages experiments in the admin, reads the registry, no API keys.

Events (exposures, rollout events, registry events) get the view permission only; the admin
of every event table refuses add, change and delete to everyone anyway.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

GROUP = "product team"
MANAGED = ("experiment", "variant", "targetingrule", "experimentmetric", "rampstep")
VIEWED = {
    "experiments": ("exposure", "rolloutevent"),
    "registry": ("mlmodel", "modelversion", "alias", "registryevent"),
}


def _codenames() -> list[tuple[str, str]]:
    wanted = [
        ("experiments", f"{action}_{model}")
        for model in MANAGED
        for action in ("add", "change", "view")
    ]
    wanted += [(app, f"view_{model}") for app, models in VIEWED.items() for model in models]
    return wanted


def create_group(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Permissions are normally made after all migrations ran; this group needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=GROUP)
    for app_label, codename in _codenames():
        group.permissions.add(
            permission_model.objects.get(content_type__app_label=app_label, codename=codename)
        )


def remove_group(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("registry", "0001_models_versions_aliases"),
        ("experiments", "0003_validation_messages_shared_with_api"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
