-- What a server's BMC last said about its power state and boot device, and
-- when: readers see this instead of opening a BMC session themselves.
ALTER TABLE power_health ADD COLUMN last_state TEXT;
ALTER TABLE power_health ADD COLUMN last_state_at TEXT;
ALTER TABLE power_health ADD COLUMN last_bootdev TEXT;
ALTER TABLE power_health ADD COLUMN last_bootdev_at TEXT;
