//! Bulk-seeds authentications for the growth check: `count` rows for one end user, each a
//! copy of a template row that latchkey itself imported (same organization, service,
//! environment, scopes and sealed blobs), with its own time-ordered id (UUID v7, one
//! millisecond apart, ending just before the template) and name. The columns are bound
//! through sqlx as SeaORM binds them, so ids, times and booleans are stored in latchkey's
//! own encodings and latchkey pages through the rows like any others. (The copied blobs
//! are bound to the template's row: a full read of a copy would refuse to open it, and
//! paging never opens one.)
//!
//! ```text
//! seed --db URL --template AUTHENTICATION_ID --owner USER_ID --count N
//! ```

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use latchkey_bench::Db;
use uuid::{Timestamp, Uuid};

type TemplateRow = (Uuid, Uuid, Uuid, String, bool, String, Vec<u8>, Vec<u8>, String, DateTime<Utc>);

const TEMPLATE: &str = "SELECT org_id, service_id, environment_id, scopes, hidden, custom_fields, credentials, \
    user_data, key_id, created_at FROM authentications WHERE id = $1";
const INSERT: &str = "INSERT INTO authentications (id, org_id, owner_user_id, service_id, environment_id, name, \
    scopes, hidden, custom_fields, credentials, user_data, key_id, created_at, updated_at) ";

fn usage(message: &str) -> ! {
    eprintln!("seed: {message}");
    eprintln!("usage: seed --db URL --template AUTHENTICATION_ID --owner USER_ID --count N");
    std::process::exit(2)
}

fn row_id(at: DateTime<Utc>) -> Uuid {
    let nanos = at.timestamp_subsec_nanos();
    Uuid::new_v7(Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, nanos))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut db, mut template, mut owner, mut count) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--db" => db = Some(value),
            "--template" => template = Some(Uuid::parse_str(&value).unwrap_or_else(|_| usage("bad --template"))),
            "--owner" => owner = Some(Uuid::parse_str(&value).unwrap_or_else(|_| usage("bad --owner"))),
            "--count" => count = Some(value.parse::<usize>().unwrap_or_else(|_| usage("bad --count"))),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let (Some(url), Some(template_id), Some(owner), Some(count)) = (db, template, owner, count) else {
        usage("--db, --template, --owner and --count are required")
    };
    let db = Db::connect(&url, Some(2)).await.expect("the database opens");
    let row: Option<TemplateRow> = match &db {
        Db::Sqlite(pool) => sqlx::query_as(TEMPLATE).bind(template_id).fetch_optional(pool).await,
        Db::Postgres(pool) => sqlx::query_as(TEMPLATE).bind(template_id).fetch_optional(pool).await,
    }
    .expect("the template reads");
    let Some((
        org_id,
        service_id,
        environment_id,
        scopes,
        hidden,
        custom_fields,
        credentials,
        user_data,
        key_id,
        created_at,
    )) = row
    else {
        usage("no authentication has the --template id")
    };
    let started = Instant::now();
    // Bound parameters per statement stay under both databases' limits (SQLite 32766,
    // PostgreSQL 65535) at 14 a row.
    let batch = 1000;
    let first = created_at - Duration::milliseconds(count as i64 + 1);
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = (0..count)
        .map(|i| {
            let at = first + Duration::milliseconds(i as i64);
            (row_id(at), format!("Seeded authentication {i}"), at)
        })
        .collect();
    macro_rules! seed {
        ($pool:expr) => {{
            let mut txn = $pool.begin().await.expect("a transaction");
            for chunk in rows.chunks(batch) {
                let mut insert = sqlx::QueryBuilder::new(INSERT);
                insert.push_values(chunk, |mut row, (id, name, at)| {
                    row.push_bind(*id)
                        .push_bind(org_id)
                        .push_bind(owner)
                        .push_bind(service_id)
                        .push_bind(environment_id)
                        .push_bind(name.as_str())
                        .push_bind(scopes.as_str())
                        .push_bind(hidden)
                        .push_bind(custom_fields.as_str())
                        .push_bind(credentials.as_slice())
                        .push_bind(user_data.as_slice())
                        .push_bind(key_id.as_str())
                        .push_bind(*at)
                        .push_bind(*at);
                });
                insert.build().execute(&mut *txn).await.expect("a batch inserts");
            }
            txn.commit().await.expect("the seed commits");
        }};
    }
    match &db {
        Db::Sqlite(pool) => seed!(pool),
        Db::Postgres(pool) => seed!(pool),
    }
    eprintln!("seeded {count} authentications in {:.1} s", started.elapsed().as_secs_f64());
}
