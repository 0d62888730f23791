-- Daemons keep the profile versions they have read (a profile's row never
-- changes; crates/store/src/profile_cache.rs): a version deleted through
-- one daemon is forgotten by the others when they hear of it here. The
-- payload is the profile's id. A start with a version deleted before the
-- notice arrives is still refused by the foreign key.

CREATE FUNCTION bootloader_profile_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bootloader_profile', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER profiles_deleted AFTER DELETE ON profiles
    FOR EACH ROW EXECUTE FUNCTION bootloader_profile_deleted();
