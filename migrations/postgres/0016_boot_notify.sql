-- What changes the boot path's answers, told to every daemon sharing the
-- database once the change has committed (NOTIFY is delivered at commit),
-- so that each daemon's boot index (crates/store/src/boot_index.rs) reads
-- again what another daemon changed. Channel `bootloader_boot`, payload:
--   'server <id>'  a deployment of that server started or ended, or a
--                  pxelinux config it serves over TFTP changed;
--   'files'        a file served was added, replaced or removed;
--   'all'          servers or interfaces changed.
-- Identical payloads of one transaction are delivered once. And on
-- `bootloader_callback`, the id of a deployment that got a callback, so
-- that the daemon running it goes on without polling.

CREATE FUNCTION bootloader_boot_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    served RECORD;
    server BIGINT;
BEGIN
    IF TG_TABLE_NAME = 'deployments' THEN
        IF TG_OP = 'DELETE' THEN
            server := OLD.server_id;
        ELSE
            server := NEW.server_id;
        END IF;
        PERFORM pg_notify('bootloader_boot', 'server ' || server);
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
                PERFORM pg_notify('bootloader_boot', 'server ' || server);
            END IF;
        ELSE
            PERFORM pg_notify('bootloader_boot', 'files');
        END IF;
    ELSE
        PERFORM pg_notify('bootloader_boot', 'all');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_boot_started AFTER INSERT OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION bootloader_boot_changed();
-- Only a change between active (new to postconfiguring) and ended.
CREATE TRIGGER deployments_boot_ended AFTER UPDATE OF state ON deployments
    FOR EACH ROW
    WHEN ((OLD.state IN ('new', 'preparing', 'installing', 'configuring', 'postconfiguring'))
          IS DISTINCT FROM
          (NEW.state IN ('new', 'preparing', 'installing', 'configuring', 'postconfiguring')))
    EXECUTE FUNCTION bootloader_boot_changed();
CREATE TRIGGER served_files_boot AFTER INSERT OR UPDATE OR DELETE ON served_files
    FOR EACH ROW EXECUTE FUNCTION bootloader_boot_changed();
-- A server's name, and an interface's identity and address (a BMC password
-- or a note changes no answer).
CREATE TRIGGER servers_boot AFTER INSERT OR DELETE OR UPDATE OF fqdn ON servers
    FOR EACH ROW EXECUTE FUNCTION bootloader_boot_changed();
CREATE TRIGGER interfaces_boot
    AFTER INSERT OR DELETE OR UPDATE OF server_id, name, mac, ipv4, network_id ON interfaces
    FOR EACH ROW EXECUTE FUNCTION bootloader_boot_changed();

CREATE FUNCTION bootloader_callback_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bootloader_callback', NEW.deployment_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER callbacks_stored AFTER INSERT ON callbacks
    FOR EACH ROW EXECUTE FUNCTION bootloader_callback_stored();
