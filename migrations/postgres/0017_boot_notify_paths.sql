-- Finer notices for the boot index (crates/store/src/boot_index.rs): a file
-- served names its path, and a deployment's start or end names the
-- deployment, so that another daemon reads again only what changed. Under
-- a boot storm every deployment's end sent 'server <id>', which made every
-- daemon read every served file again from the database. Payloads now:
--   'server <id> <deployment>'  that deployment of the server started or
--                               ended, or changed a pxelinux config it
--                               serves over TFTP;
--   'file <via> <path>'         the file served at that path was added,
--                               replaced or removed ('files' when the path
--                               is too long for a notification);
--   'all'                       servers or interfaces changed.
-- A daemon of the version before still understands them: 'server <id> ...'
-- and 'file ...' fall to its "everything" case.

CREATE OR REPLACE FUNCTION bootloader_boot_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    served RECORD;
    server BIGINT;
BEGIN
    IF TG_TABLE_NAME = 'deployments' THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('bootloader_boot', 'server ' || OLD.server_id || ' ' || OLD.id);
        ELSE
            PERFORM pg_notify('bootloader_boot', 'server ' || NEW.server_id || ' ' || NEW.id);
        END IF;
    ELSIF TG_TABLE_NAME = 'served_files' THEN
        IF TG_OP = 'DELETE' THEN
            served := OLD;
        ELSE
            served := NEW;
        END IF;
        IF served.via = 'tftp' AND served.path LIKE 'pxelinux.cfg/%' THEN
            SELECT d.server_id INTO server FROM deployments d WHERE d.id = served.deployment_id;
            IF server IS NULL THEN
                PERFORM pg_notify('bootloader_boot', 'all');
            ELSE
                PERFORM pg_notify('bootloader_boot', 'server ' || server || ' ' || served.deployment_id);
            END IF;
        END IF;
        IF octet_length(served.path) <= 4000 THEN
            PERFORM pg_notify('bootloader_boot', 'file ' || served.via || ' ' || served.path);
        ELSE
            PERFORM pg_notify('bootloader_boot', 'files');
        END IF;
    ELSE
        PERFORM pg_notify('bootloader_boot', 'all');
    END IF;
    RETURN NULL;
END
$$;
