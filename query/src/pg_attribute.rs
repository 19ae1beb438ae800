//! `pg_catalog.pg_attribute` and `pg_catalog.pg_type`: the columns of
//! wattline's tables and their types as PostgreSQL describes them, which
//! drivers read to list a table's columns (JDBC's `getColumns`, and with
//! it DBeaver's and other tools' table views). Like the rest of
//! `pg_catalog`, they describe table shapes only, the same for every
//! tenant. `pg_attrdef` (no column has a default) is empty.

use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::guard::TABLES;

/// The types columns are sent as (see the front end's encoding): oid,
/// name, length (-1: variable).
const TYPES: [(i64, &str, i64); 11] = [
    (16, "bool", 1),
    (17, "bytea", -1),
    (20, "int8", 8),
    (21, "int2", 2),
    (23, "int4", 4),
    (25, "text", -1),
    (700, "float4", 4),
    (701, "float8", 8),
    (1082, "date", 4),
    (1114, "timestamp", 8),
    (1184, "timestamptz", 8),
];

/// The PostgreSQL type a column of `ty` is sent as (the front end's
/// encoding; its tests check the two agree).
pub fn type_oid(ty: &DataType) -> i64 {
    match ty {
        DataType::Boolean => 16,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => 17,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 20,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        _ => 25,
    }
}

/// `pg_type`: the types above, in `pg_catalog`.
pub(crate) fn pg_type() -> Vec<(&'static str, ArrayRef)> {
    let n = TYPES.len();
    let int = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    vec![
        ("oid", int(TYPES.iter().map(|t| t.0).collect())),
        (
            "typname",
            Arc::new(StringArray::from_iter_values(TYPES.iter().map(|t| t.1))),
        ),
        (
            "typnamespace",
            int(vec![super::pg_catalog::PG_CATALOG_OID; n]),
        ),
        ("typlen", int(TYPES.iter().map(|t| t.2).collect())),
        ("typtype", Arc::new(StringArray::from(vec!["b"; n]))),
        ("typnotnull", Arc::new(BooleanArray::from(vec![false; n]))),
        ("typtypmod", int(vec![-1; n])),
        ("typbasetype", int(vec![0; n])),
        ("typelem", int(vec![0; n])),
        ("typrelid", int(vec![0; n])),
    ]
}

/// `pg_attribute`, built when scanned from the tables' schemas.
pub(crate) struct PgAttribute {
    /// Weak: the catalog holds this table (a strong reference would keep
    /// the session's tables, and the data snapshots they hold, forever).
    catalog: Weak<dyn CatalogProvider>,
    schema: SchemaRef,
}

impl PgAttribute {
    pub(crate) fn new(catalog: &Arc<dyn CatalogProvider>) -> Arc<Self> {
        let int = |n: &str| Field::new(n, DataType::Int64, false);
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let flag = |n: &str| Field::new(n, DataType::Boolean, false);
        let schema = Arc::new(Schema::new(vec![
            int("attrelid"),
            text("attname"),
            int("atttypid"),
            int("attlen"),
            int("attnum"),
            int("atttypmod"),
            flag("attnotnull"),
            flag("attisdropped"),
            flag("atthasdef"),
            text("attidentity"),
            text("attgenerated"),
        ]));
        Arc::new(Self {
            catalog: Arc::downgrade(catalog),
            schema,
        })
    }

    async fn rows(&self) -> DfResult<RecordBatch> {
        let mut relid = Vec::new();
        let (mut name, mut typid, mut len, mut num, mut not_null) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let public = self.catalog.upgrade().and_then(|c| c.schema("public"));
        let Some(public) = public else {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        };
        for (i, table) in TABLES.iter().enumerate() {
            let Some(provider) = public.table(table).await? else {
                continue;
            };
            for (n, field) in provider.schema().fields().iter().enumerate() {
                relid.push(super::pg_catalog::table_oid(i));
                name.push(field.name().clone());
                let oid = type_oid(field.data_type());
                typid.push(oid);
                len.push(TYPES.iter().find(|t| t.0 == oid).map_or(-1, |t| t.2));
                num.push(n as i64 + 1);
                not_null.push(!field.is_nullable());
            }
        }
        let rows = relid.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(relid)),
            Arc::new(StringArray::from(name)),
            Arc::new(Int64Array::from(typid)),
            Arc::new(Int64Array::from(len)),
            Arc::new(Int64Array::from(num)),
            Arc::new(Int64Array::from(vec![-1; rows])),
            Arc::new(BooleanArray::from(not_null)),
            Arc::new(BooleanArray::from(vec![false; rows])),
            Arc::new(BooleanArray::from(vec![false; rows])),
            Arc::new(StringArray::from(vec![""; rows])),
            Arc::new(StringArray::from(vec![""; rows])),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl std::fmt::Debug for PgAttribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAttribute").finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for PgAttribute {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.rows().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};

    #[test]
    fn the_table_does_not_keep_its_catalog_alive() -> DfResult<()> {
        let catalog: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        catalog.register_schema("pg_catalog", schema.clone())?;
        schema.register_table("pg_attribute".into(), PgAttribute::new(&catalog))?;
        let weak = Arc::downgrade(&catalog);
        drop((catalog, schema));
        assert!(weak.upgrade().is_none());
        Ok(())
    }
}
