-- The older system's database at a size a site has: 5,000 servers with an
-- interface each, 2,000 past deployments with 10 log lines each, 200 users.
-- Load after tests/fixtures/older/schema.sql (BENCHMARKS.md, "import-legacy").
INSERT INTO servers_location (id, created, modified, is_active, name) VALUES (1, now(), now(), true, 'dc1');
INSERT INTO servers_network (created, modified, is_active, name, network, gateway, nameserver, location_id)
  VALUES (now(), now(), true, 'boot', '10.0.0.0/16', '10.0.0.1', '10.0.0.2', 1);
INSERT INTO servers_server (id, created, modified, is_active, fqdn, notes, serial, ipmi_host, ipmi_browser_proto, ipmi_browser_port, location_id)
  SELECT i, now(), now(), true, 'n' || i || '.dc1.example.com', NULL, 'SN' || i, '10.1.' || (i / 250) || '.' || (i % 250 + 1), 'http', 80, 1
  FROM generate_series(1, 5000) i;
INSERT INTO servers_interface (created, modified, is_active, name, mac, server_id)
  SELECT now(), now(), true, 'eth0', '52:54:00:' || lpad(to_hex(i / 65536), 2, '0') || ':' || lpad(to_hex((i / 256) % 256), 2, '0') || ':' || lpad(to_hex(i % 256), 2, '0'), i
  FROM generate_series(1, 5000) i;
INSERT INTO deployments_profile (id, created, modified, is_active, name, version, profile) VALUES
  (1, now(), now(), true, 'echo', '0.1', '{"kind":"Profile","apiVersion":"v1alpha1","name":"echo","version":"0.1","workflow":{"new":[{"action":"echo","message":"hi {{ fqdn }}"}]}}');
INSERT INTO deployments_deployment (id, created, modified, is_active, status, parameters, token, progress, profile_id, server_id)
  SELECT i, now() - interval '1 day', now(), true, 'complete', '{}', md5(i::text) || md5((i + 1)::text), 100, 1, i
  FROM generate_series(1, 2000) i;
INSERT INTO deployments_logentry (created, modified, is_active, level, message, deployment_id)
  SELECT now(), now(), true, 'INFO', 'line ' || j || ' of deployment ' || i, i
  FROM generate_series(1, 2000) i, generate_series(1, 10) j;
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
  SELECT 'pbkdf2_sha256$36000$Ki8y3sOqLQzV$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=', false, 'user' || i, '', '', '', false, true, now()
  FROM generate_series(1, 200) i;
