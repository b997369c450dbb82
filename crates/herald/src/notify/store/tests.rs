//! The notification store's behaviour on an in-memory SQLite database: what a user
//! sees of their own rows and of broadcasts, read state per user, idempotency keys,
//! batches past one INSERT, retention. (The same SQL runs on MySQL and PostgreSQL in
//! tests/notify.rs against real servers.)

use std::time::Duration;

use super::{Draft, EVERYONE, MAX_ROWS_PER_INSERT, MarkRead, NotificationStore, PoolSettings};

async fn store() -> NotificationStore {
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    };
    NotificationStore::open("sqlite::memory:", &settings)
        .await
        .expect("an in-memory SQLite store")
}

fn draft(message: &str, created_at: i64) -> Draft {
    Draft {
        kind: "info".into(),
        title: "t".into(),
        message: message.into(),
        redirect_path: Some("/orders/7".into()),
        payload: Some(r#"{"n":1}"#.into()),
        idempotency_key: None,
        created_at,
    }
}

fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn a_user_sees_their_own_rows_and_broadcasts_newest_first() {
    let s = store().await;
    assert_eq!(s.backend(), "sqlite");
    s.insert(&users(&["ada"]), &draft("mine", 1)).await.unwrap();
    s.insert(&users(&["bob"]), &draft("bob's", 2))
        .await
        .unwrap();
    s.insert(&users(&[EVERYONE]), &draft("all", 3))
        .await
        .unwrap();
    let seen: Vec<String> = s
        .list("ada", None, 10, false)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.message)
        .collect();
    assert_eq!(seen, ["all", "mine"]);
    assert_eq!(s.unread_count("ada").await.unwrap(), 2);
    let page = s.list("ada", None, 1, false).await.unwrap();
    let rest = s.list("ada", Some(page[0].id), 10, false).await.unwrap();
    assert_eq!((page.len(), rest.len()), (1, 1), "paging by id");
}

#[tokio::test]
async fn read_state_is_per_user_even_for_a_broadcast() {
    let s = store().await;
    let all = s
        .insert(&users(&[EVERYONE]), &draft("all", 1))
        .await
        .unwrap();
    let id = all.rows[0].id;
    assert_eq!(s.mark_read("ada", id, 10).await.unwrap(), MarkRead::Marked);
    assert_eq!(
        s.mark_read("ada", id, 11).await.unwrap(),
        MarkRead::AlreadyRead
    );
    assert_eq!(s.unread_count("ada").await.unwrap(), 0);
    assert_eq!(
        s.unread_count("bob").await.unwrap(),
        1,
        "bob has not read it"
    );
    let mine = s
        .insert(&users(&["bob"]), &draft("bob's", 2))
        .await
        .unwrap();
    assert_eq!(
        s.mark_read("ada", mine.rows[0].id, 12).await.unwrap(),
        MarkRead::NotFound,
        "ada cannot mark bob's"
    );
    let mut marked = s.mark_all_read("bob", 13).await.unwrap();
    marked.sort();
    assert_eq!(marked.len(), 2);
    assert!(s.list("bob", None, 10, true).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_rows_per_recipient() {
    let s = store().await;
    let mut d = draft("once", 1);
    d.idempotency_key = Some("caller:key-1".into());
    let first = s.insert(&users(&["ada", "bob"]), &d).await.unwrap();
    assert_eq!(first.written, [true, true]);
    // The same key again, one recipient more: the two get their rows back.
    let again = s.insert(&users(&["ada", "bob", "cy"]), &d).await.unwrap();
    assert_eq!(again.written, [false, false, true]);
    assert_eq!(again.rows[0].id, first.rows[0].id);
    assert_eq!(again.rows[1].id, first.rows[1].id);
    let third = s.insert(&users(&["ada"]), &d).await.unwrap();
    assert!(third.duplicate());
    assert_eq!(s.list("ada", None, 10, false).await.unwrap().len(), 1);
}

#[tokio::test]
async fn many_recipients_span_several_inserts_in_order() {
    let s = store().await;
    let many: Vec<String> = (0..MAX_ROWS_PER_INSERT + 7)
        .map(|i| format!("u{i}"))
        .collect();
    let inserted = s.insert(&many, &draft("hello", 1)).await.unwrap();
    assert_eq!(inserted.rows.len(), many.len());
    assert!(
        inserted
            .rows
            .iter()
            .zip(&many)
            .all(|(row, u)| &row.recipient == u)
    );
    assert_eq!(
        s.unread_count(&many[MAX_ROWS_PER_INSERT + 3])
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn retention_removes_what_was_read_before_the_cutoff() {
    let s = store().await;
    let read = s.insert(&users(&["ada"]), &draft("read", 1)).await.unwrap();
    s.insert(&users(&["ada"]), &draft("unread", 2))
        .await
        .unwrap();
    s.mark_read("ada", read.rows[0].id, 5).await.unwrap();
    assert_eq!(s.purge(10).await.unwrap(), 1);
    let left: Vec<String> = s
        .list("ada", None, 10, false)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.message)
        .collect();
    assert_eq!(left, ["unread"]);
}
