//! `worker roles plan | apply` through the binary: a new mapping reaches every active user at
//! once, through the user's lock, with audit rows and `user.roles_changed` changes; plan writes
//! nothing; a second apply changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::apply::{applier, apply_all};
use testkit::db::TestDb;
use worker::service::role_mapping::RoleMapping;

const OLD: &str = "[default.by_group_name]\n\"Eng\" = \"engineer\"\n";
const NEW: &str = "[default.by_group_name]\n\"Eng\" = \"developer\"\n\"Sales\" = \"seller\"\n";

fn user(i: usize, group: &str, active: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_r{i}"), "type": "organization.directory.user_created",
        "object": "DirectoryUser", "spec_version": "1", "environment_id": "env_1",
        "organization_id": "org_r", "occurred_at": "2026-01-01T10:00:00Z",
        "data": {"id": format!("diruser_{i}"), "organization_id": "org_r", "active": active,
                 "email": format!("u{i}@example.com"),
                 "groups": [{"id": format!("dirgroup_{group}"), "name": group}],
                 "roles": [{"role_name": "member"}]}
    }))
    .unwrap()
}

async fn roles(args: &[&str], db: &TestDb) -> String {
    let out = support::succeeded(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("roles")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("LOG_FORMAT", "pretty"),
    )
    .await;
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mapping_is_planned_then_applied_to_every_active_user() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::parse(OLD, "old.toml").unwrap());
    let bodies = vec![
        user(1, "Eng", true),
        user(2, "Eng", true),
        user(3, "Sales", true),
        user(4, "Eng", false),
    ];
    apply_all(&a, &bodies).await;
    let mapped = |role: &'static str| {
        let db = &db;
        async move {
            db.count(&format!(
                "SELECT count(*) AS n FROM user_roles WHERE role_name = '{role}' AND source = 'mapping'"
            ))
            .await
        }
    };
    assert_eq!(
        (mapped("engineer").await, mapped("developer").await),
        (2, 0)
    );
    let dir = std::env::temp_dir().join(format!("roles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("new.toml");
    std::fs::write(&file, NEW).unwrap();
    let file = file.to_str().unwrap();

    let plan = roles(&["plan", "--mapping", file], &db).await;
    assert!(plan.starts_with("3 users would change"), "{plan}");
    assert!(plan.contains("org_r: 3 users"), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.contains("diruser_1 u1@example.com") && l.ends_with("+developer -engineer")),
        "{plan}"
    );
    assert!(
        plan.lines()
            .any(|l| l.contains("diruser_3") && l.ends_with("+seller")),
        "{plan}"
    );
    assert!(
        !plan.contains("diruser_4"),
        "inactive users keep no roles: {plan}"
    );
    assert_eq!(
        (mapped("engineer").await, mapped("developer").await),
        (2, 0),
        "plan writes nothing"
    );

    let applied = roles(&["apply", "--mapping", file], &db).await;
    assert!(applied.starts_with("3 users changed"), "{applied}");
    assert_eq!(
        (
            mapped("engineer").await,
            mapped("developer").await,
            mapped("seller").await
        ),
        (0, 2, 1)
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM user_roles WHERE role_name = 'member' AND source = 'scalekit'")
            .await,
        3,
        "Scalekit's own roles stay"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE action = 'roles_remapped'")
            .await,
        3
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM changes WHERE kind = 'user.roles_changed' \
             AND cause_event_id LIKE 'roles_apply_%' \
             AND payload->'granted' ? 'developer' AND payload->'revoked' ? 'engineer'"
        )
        .await,
        2
    );

    let again = roles(&["apply", "--mapping", file, "--org", "org_r"], &db).await;
    assert!(again.starts_with("0 users changed"), "{again}");
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop_db().await;
}
