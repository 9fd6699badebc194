"""Notify the configuration number on commit, for each process's watcher (watcher.py).

A row trigger on experiments_configversion sends the new number with pg_notify on channel
kaizen_experiments_config; PostgreSQL delivers it to the listeners when (and only if) the
transaction commits, in commit order. A statement trigger sends 0 when the row is deleted
or the table truncated (a flushed database reads as number 0).
"""

from django.db import migrations

NOTIFY = """
CREATE OR REPLACE FUNCTION experiments_config_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        PERFORM pg_notify('kaizen_experiments_config', NEW.version::text);
    ELSE
        PERFORM pg_notify('kaizen_experiments_config', '0');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER experiments_config_notify_row
    AFTER INSERT OR UPDATE ON experiments_configversion
    FOR EACH ROW EXECUTE FUNCTION experiments_config_notify();
CREATE TRIGGER experiments_config_notify_gone
    AFTER DELETE OR TRUNCATE ON experiments_configversion
    FOR EACH STATEMENT EXECUTE FUNCTION experiments_config_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS experiments_config_notify_row ON experiments_configversion;
DROP TRIGGER IF EXISTS experiments_config_notify_gone ON experiments_configversion;
DROP FUNCTION IF EXISTS experiments_config_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("experiments", "0005_assignment_function_leaner_exposure_indexes")]

    operations = [migrations.RunSQL(sql=NOTIFY, reverse_sql=DROP)]
