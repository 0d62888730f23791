-- A read-only role for a web layer or other tools reading bootloader's
-- PostgreSQL database (docs/schema.md). Run as the database owner after
-- `bootloader migrate`, in the bootloader database:
--
--   psql -v ON_ERROR_STOP=1 -v reader=bootloader_web -d bootloader \
--        -f postgres-readonly-role.sql
--   ALTER ROLE bootloader_web LOGIN PASSWORD '...';
--
-- It may read every table except secrets: BMC and credential passwords
-- (sealed), deployments' callback tokens (hashed and sealed), API token
-- hashes and the settings table (the key check). It may write nothing.

SELECT format('CREATE ROLE %I NOLOGIN', :'reader')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader')
\gexec

GRANT USAGE ON SCHEMA public TO :"reader";

GRANT SELECT ON
    locations, networks, labels, server_labels, interfaces, users,
    ssh_authorized_keys, profiles, served_files, leases, boot_events,
    callbacks, deployment_log, outbox, power_health, daemon_locks, agents,
    older_imports
TO :"reader";

GRANT SELECT (id, fqdn, location_id, serial, notes, bmc_host, bmc_port,
              bmc_username, bmc_credential_id, bmc_driver, created_at, updated_at)
    ON servers TO :"reader";
GRANT SELECT (id, name, username, description, created_at, updated_at)
    ON credentials TO :"reader";
GRANT SELECT (id, server_id, profile_id, state, created_at, updated_at, step,
              action_index, actions_done, action_deadline, step_deadline,
              error, repeat_of, finished_at, runner, runner_until)
    ON deployments TO :"reader";
GRANT SELECT (id, user_id, prefix, scope, description, expires_at, created_at,
              last_used_at)
    ON api_tokens TO :"reader";
GRANT SELECT (id, server_id, name, created_at) ON server_secrets TO :"reader";
