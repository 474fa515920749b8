//! Every column that holds a sealed value, declared once. Rotation, `keys list` and
//! `keys retire` walk [`SEALED`]: a new sealed column is one more entry here, and from
//! then on it is re-sealed, counted and guarded like every other.

use sea_orm::{
    ConnectionTrait, DbErr, QueryResult,
    sea_query::{Alias, Cond, Expr, ExprTrait, Query, SelectStatement},
};
use uuid::Uuid;

use crate::crypto::Binding;

/// A table whose rows hold sealed values, all under the key named in one key-id column.
///
/// Every sealed value is bound (see [`Binding`]) to its organization, its owner, the
/// row's `id` and the name of its column, so the columns here name the binding too.
pub struct SealedTable {
    /// How errors name a row of this table.
    pub what: &'static str,
    pub table: &'static str,
    /// The key id every sealed column of a row is under; NULL when the row was sealed
    /// before key ids were recorded, or holds nothing sealed.
    pub key_id: &'static str,
    pub org_id: &'static str,
    /// `None`: values are owned by the organization itself.
    pub owner: Option<&'static str>,
    /// The sealed columns; a NULL one holds nothing and is left alone.
    pub columns: &'static [&'static str],
}

/// Every sealed value latchkey stores.
pub const SEALED: &[SealedTable] = &[
    SealedTable {
        what: "authentication",
        table: "authentications",
        key_id: "key_id",
        org_id: "org_id",
        owner: Some("owner_user_id"),
        columns: &["credentials", "user_data"],
    },
    SealedTable {
        what: "service environment",
        table: "service_environments",
        key_id: "key_id",
        org_id: "org_id",
        owner: None,
        columns: &["oauth_client_secret"],
    },
    SealedTable {
        what: "webhook endpoint",
        table: "webhook_endpoints",
        key_id: "key_id",
        org_id: "org_id",
        owner: None,
        columns: &["secret", "previous_secret"],
    },
    SealedTable {
        what: "OAuth flow",
        table: "oauth_flows",
        key_id: "key_id",
        org_id: "org_id",
        owner: Some("user_id"),
        columns: &["pkce_verifier"],
    },
];

/// One row of a [`SealedTable`] as read, before re-sealing.
pub struct SealedRow {
    pub id: Uuid,
    pub key_id: Option<String>,
    org_id: Option<Uuid>,
    owner: Option<Uuid>,
    /// Per declared column, in order.
    pub values: Vec<Option<Vec<u8>>>,
}

impl SealedRow {
    /// The binding of one declared column of this row; `None` for a row without an
    /// organization, which no sealed value may have.
    pub fn binding(&self, column: &'static str) -> Option<Binding<'static>> {
        Some(Binding { org_id: self.org_id?, owner: self.owner, record_id: self.id, field: column })
    }
}

fn col(name: &'static str) -> Expr {
    Expr::col(Alias::new(name))
}

impl SealedTable {
    /// Rows holding at least one sealed value.
    fn holds_sealed(&self) -> Cond {
        self.columns.iter().fold(Cond::any(), |cond, column| cond.add(col(column).is_not_null()))
    }

    /// Rows not sealed under `active`. `key_id <> ?` is not true for NULL, so rows without
    /// a key id are asked for explicitly: they must move too.
    fn not_under(&self, active: &str) -> Cond {
        Cond::any().add(col(self.key_id).ne(active)).add(col(self.key_id).is_null())
    }

    /// Up to `limit` rows holding a sealed value not under the `active` key.
    pub async fn rows_not_under(
        &self,
        conn: &impl ConnectionTrait,
        active: &str,
        limit: u64,
    ) -> Result<Vec<SealedRow>, DbErr> {
        let mut select = Query::select();
        select.from(Alias::new(self.table)).column(Alias::new("id")).column(Alias::new(self.key_id));
        select.column(Alias::new(self.org_id));
        if let Some(owner) = self.owner {
            select.column(Alias::new(owner));
        }
        for column in self.columns {
            select.column(Alias::new(*column));
        }
        select.cond_where(self.holds_sealed()).cond_where(self.not_under(active)).limit(limit);
        conn.query_all(&select).await?.iter().map(|row| self.read(row)).collect()
    }

    fn read(&self, row: &QueryResult) -> Result<SealedRow, DbErr> {
        Ok(SealedRow {
            id: row.try_get("", "id")?,
            key_id: row.try_get("", self.key_id)?,
            org_id: row.try_get("", self.org_id)?,
            owner: match self.owner {
                Some(owner) => row.try_get("", owner)?,
                None => None,
            },
            values: self.columns.iter().map(|column| row.try_get("", column)).collect::<Result<_, _>>()?,
        })
    }

    /// Writes a row's re-sealed values and its new key id, only if the row still holds
    /// exactly what `read` held: a value a running server rewrote meanwhile (with a fresh
    /// nonce, even under the same key) is never overwritten with stale contents. True when
    /// the row was written.
    pub async fn compare_and_swap(
        &self,
        conn: &impl ConnectionTrait,
        read: &SealedRow,
        resealed: &[Option<Vec<u8>>],
        active: &str,
    ) -> Result<bool, DbErr> {
        let mut update = Query::update();
        update.table(Alias::new(self.table)).value(Alias::new(self.key_id), active);
        update.and_where(col("id").eq(read.id));
        update.and_where(match &read.key_id {
            Some(key_id) => col(self.key_id).eq(key_id.as_str()),
            None => col(self.key_id).is_null(),
        });
        for ((column, old), new) in self.columns.iter().zip(&read.values).zip(resealed) {
            match (old, new) {
                (Some(old), Some(new)) => {
                    update.value(Alias::new(*column), new.clone());
                    update.and_where(col(column).eq(old.clone()));
                }
                _ => {
                    update.and_where(col(column).is_null());
                }
            }
        }
        Ok(conn.execute(&update).await?.rows_affected() == 1)
    }

    fn counted(&self) -> SelectStatement {
        let mut select = Query::select();
        select.from(Alias::new(self.table)).expr_as(Expr::col(Alias::new("id")).count(), Alias::new("sealed_rows"));
        select.cond_where(self.holds_sealed());
        select
    }

    /// How many rows hold a sealed value, by key id (`None` for rows without one).
    pub async fn usage(&self, conn: &impl ConnectionTrait) -> Result<Vec<(Option<String>, u64)>, DbErr> {
        let mut select = self.counted();
        select.column(Alias::new(self.key_id)).group_by_col(Alias::new(self.key_id));
        conn.query_all(&select)
            .await?
            .iter()
            .map(|row| {
                let rows: i64 = row.try_get("", "sealed_rows")?;
                Ok((row.try_get("", self.key_id)?, u64::try_from(rows).unwrap_or(0)))
            })
            .collect()
    }

    /// How many rows hold a value sealed under `key_id`.
    pub async fn rows_sealed_by(&self, conn: &impl ConnectionTrait, key_id: &str) -> Result<u64, DbErr> {
        let mut select = self.counted();
        select.and_where(col(self.key_id).eq(key_id));
        let rows: i64 = match conn.query_one(&select).await? {
            Some(row) => row.try_get("", "sealed_rows")?,
            None => 0,
        };
        Ok(u64::try_from(rows).unwrap_or(0))
    }
}
