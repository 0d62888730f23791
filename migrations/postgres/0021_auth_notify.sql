-- Daemons keep the API tokens they have authenticated for up to a minute
-- (crates/store/src/token_cache.rs). Whatever could change a token's
-- answer (the token revoked or altered; its user renamed, deactivated,
-- made staff or not, deleted) tells every daemon here, and each forgets
-- every token it kept. The time of a token's last use is written once a
-- minute per token and changes no answer: it tells nothing.

CREATE FUNCTION bootloader_auth_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bootloader_auth', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_changed
    AFTER DELETE OR UPDATE OF user_id, token_hash, scope, expires_at ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION bootloader_auth_changed();

CREATE TRIGGER users_changed
    AFTER DELETE OR UPDATE OF name, is_active, is_staff ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bootloader_auth_changed();
