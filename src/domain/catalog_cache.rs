//! Services and environments as this process last read them, so that a page of
//! authentications reads only their ids and `updated_at` stamps, not their schemas and
//! icons for every row.
//!
//! Every entry holds the `updated_at` it was read at, and is used only by a read whose own
//! statement found the same stamp on the row. Every change to a service or environment
//! advances its stamp strictly ([`advanced`]) under the row's lock, so whichever process
//! made it (this one, a replica, the CLI), the next read misses, loads the row again and
//! shows the change at once. Because each use is checked against the database, one
//! process-wide cache serves any number of databases (tests open several).

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::catalog::{Environment, Service, visible_to};
use crate::{auth::Caller, error::Result, ids::OrgId};
use entity::{service, service_environment};

/// Entries kept per kind; past it the map starts again empty (a catalog this large is
/// many organizations' custom services, and a miss costs one statement).
const CAPACITY: usize = 4096;

/// The stamp a change writes: now, or just after the previous stamp when the clock has
/// not moved past it (or runs behind on another replica), so that stamps never repeat.
pub fn advanced(previous: DateTime<Utc>) -> DateTime<Utc> {
    Utc::now().max(previous + TimeDelta::microseconds(1))
}

/// A row's id and stamp, as read with the authentications that use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub id: Uuid,
    pub updated_at: DateTime<Utc>,
}

/// A row as read: the stamp it was read at, the organization that owns it (`None` for
/// built-in rows, which every organization sees), and the value.
struct Entry<T> {
    updated_at: DateTime<Utc>,
    owner: Option<Uuid>,
    value: Arc<T>,
}

struct Entries<T>(RwLock<HashMap<Uuid, Entry<T>>>);

impl<T> Entries<T> {
    fn new() -> Self {
        Self(RwLock::new(HashMap::new()))
    }

    /// The entries whose stamps match and that `org` may see; the ids of the others.
    fn lookup(&self, org: OrgId, stamps: &[Stamp]) -> (HashMap<Uuid, Arc<T>>, Vec<Uuid>) {
        let mut found = HashMap::with_capacity(stamps.len());
        let mut missing = Vec::new();
        let entries = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        for stamp in stamps {
            if found.contains_key(&stamp.id) || missing.contains(&stamp.id) {
                continue;
            }
            match entries.get(&stamp.id) {
                Some(entry)
                    if entry.updated_at == stamp.updated_at && entry.owner.is_none_or(|owner| owner == org.0) =>
                {
                    found.insert(stamp.id, entry.value.clone());
                }
                _ => missing.push(stamp.id),
            }
        }
        (found, missing)
    }

    fn keep(&self, id: Uuid, updated_at: DateTime<Utc>, owner: Option<Uuid>, value: Arc<T>) {
        let mut entries = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(id, Entry { updated_at, owner, value });
    }
}

static SERVICES: LazyLock<Entries<Service>> = LazyLock::new(Entries::new);
static ENVIRONMENTS: LazyLock<Entries<Environment>> = LazyLock::new(Entries::new);

/// The services of `stamps`, from the cache where the stamps match and otherwise read in
/// one statement (rows the caller cannot see are left out, as missing ones are).
pub async fn services(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    stamps: &[Stamp],
) -> Result<HashMap<Uuid, Arc<Service>>> {
    let (mut found, missing) = SERVICES.lookup(caller.org_id(), stamps);
    if !missing.is_empty() {
        let rows = service::Entity::find()
            .filter(visible_to(caller.org_id(), service::Column::OrgId))
            .filter(service::Column::Id.is_in(missing))
            .all(conn)
            .await?;
        for row in rows {
            let (id, updated_at, owner) = (row.id, row.updated_at, row.org_id);
            let value = Arc::new(Service::from(row));
            SERVICES.keep(id, updated_at, owner, value.clone());
            found.insert(id, value);
        }
    }
    Ok(found)
}

/// The environments of `stamps`, as [`services`] finds services.
pub async fn environments(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    stamps: &[Stamp],
) -> Result<HashMap<Uuid, Arc<Environment>>> {
    let (mut found, missing) = ENVIRONMENTS.lookup(caller.org_id(), stamps);
    if !missing.is_empty() {
        let rows = service_environment::Entity::find()
            .filter(visible_to(caller.org_id(), service_environment::Column::OrgId))
            .filter(service_environment::Column::Id.is_in(missing))
            .all(conn)
            .await?;
        for row in rows {
            let (id, updated_at, owner) = (row.id, row.updated_at, row.org_id);
            let value = Arc::new(Environment::try_from(row)?);
            ENVIRONMENTS.keep(id, updated_at, owner, value.clone());
            found.insert(id, value);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_move_forward_even_when_the_clock_does_not() {
        let ahead = Utc::now() + TimeDelta::hours(1);
        assert_eq!(advanced(ahead), ahead + TimeDelta::microseconds(1));
        let behind = Utc::now() - TimeDelta::hours(1);
        assert!(advanced(behind) > behind + TimeDelta::minutes(59));
    }

    #[test]
    fn an_entry_serves_only_the_stamp_it_was_read_at_and_only_where_its_row_is_visible() {
        let entries = Entries::new();
        let (own, builtin) = (Uuid::now_v7(), Uuid::now_v7());
        let (org, other) = (OrgId(Uuid::now_v7()), OrgId(Uuid::now_v7()));
        let read_at = Utc::now();
        entries.keep(own, read_at, Some(org.0), Arc::new("own v1"));
        entries.keep(builtin, read_at, None, Arc::new("built-in"));
        let stamps = [Stamp { id: own, updated_at: read_at }, Stamp { id: builtin, updated_at: read_at }];

        let (found, missing) = entries.lookup(org, &stamps);
        assert_eq!(
            (found.get(&own).map(|v| **v), found.get(&builtin).map(|v| **v)),
            (Some("own v1"), Some("built-in"))
        );
        assert!(missing.is_empty());
        let (found, missing) = entries.lookup(other, &stamps);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            vec![&builtin],
            "another organization's row is read, never served"
        );
        assert_eq!(missing, vec![own]);

        let changed = advanced(read_at);
        let (found, missing) =
            entries.lookup(org, &[Stamp { id: own, updated_at: changed }, Stamp { id: own, updated_at: changed }]);
        assert!(found.is_empty());
        assert_eq!(missing, vec![own], "asked for once however many rows use it");
    }
}
