//! The SQL of `PowerStore`, written once and expanded for each backend by
//! `power_sql_store!`.

pub(super) mod rows {
    use time::OffsetDateTime;

    #[derive(sqlx::FromRow)]
    pub struct HealthRow {
        pub last_success_at: Option<OffsetDateTime>,
        pub last_failure_at: Option<OffsetDateTime>,
        pub consecutive_failures: i32,
        pub last_error_kind: Option<String>,
        pub last_error: Option<String>,
        pub last_command: String,
        pub last_state: Option<String>,
        pub last_state_at: Option<OffsetDateTime>,
        pub last_bootdev: Option<String>,
        pub last_bootdev_at: Option<OffsetDateTime>,
    }

    impl From<HealthRow> for crate::power::PowerHealth {
        fn from(r: HealthRow) -> Self {
            Self {
                last_success_at: r.last_success_at,
                last_failure_at: r.last_failure_at,
                consecutive_failures: r.consecutive_failures.max(0) as u32,
                last_error_kind: r.last_error_kind,
                last_error: r.last_error,
                last_command: Some(r.last_command),
                last_state: r.last_state.and_then(|t| serde_json::from_str(&t).ok()),
                last_state_at: r.last_state_at,
                last_bootdev: r.last_bootdev.and_then(|t| serde_json::from_str(&t).ok()),
                last_bootdev_at: r.last_bootdev_at,
            }
        }
    }
}
