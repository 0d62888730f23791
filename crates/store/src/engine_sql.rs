//! The SQL of `EngineStore`, written once and expanded for each backend by
//! `engine_sql_store!`.

pub(super) mod rows {
    use time::OffsetDateTime;

    /// A deployment with what its engine task needs, read in one query.
    #[derive(sqlx::FromRow)]
    pub struct EngineRow {
        #[sqlx(flatten)]
        pub record: crate::boot_sql::rows::DeploymentRow,
        pub source: String,
        pub token_sealed: Option<Vec<u8>>,
        pub action_deadline: Option<i64>,
        pub step_deadline: Option<i64>,
    }

    #[derive(sqlx::FromRow)]
    pub struct LogRow {
        pub id: i64,
        pub at: OffsetDateTime,
        pub level: String,
        pub message: String,
    }
}
