//! The simple and extended query protocols over the query engine.
//!
//! Both run each statement in the session's scope through the same engine
//! and guards as `POST /api/v1/sql` (read-only plan, size, memory, rows,
//! time, per-tenant concurrency). The extended protocol plans a statement
//! when it is parsed, to tell its parameter and result types, and plans it
//! again when it runs, so a prepared statement reads the newest data. A
//! cancel request drops the running statement, which stops its query.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::NoticeResponse;
use wattline_query::QueryEngine;

use crate::auth::{Session, session_of};
use crate::encode;
use crate::errors::{error, query_error};
use crate::params;
use crate::statements::{self, Statement};

/// A parsed statement of the extended protocol.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    statement: Statement,
    /// The columns it answers; `None` for statements that answer none.
    schema: Option<SchemaRef>,
    /// Parameter types as told to the client (its own where it gave them).
    param_types: Vec<Type>,
    /// The types the query needs its parameters in.
    targets: Vec<Option<DataType>>,
}

/// Runs statements for one kind of client session.
pub(crate) struct Queries {
    engine: Arc<QueryEngine>,
}

impl Queries {
    pub(crate) fn new(engine: Arc<QueryEngine>) -> Self {
        Self { engine }
    }

    /// Runs one statement; `format` is the Bind's result formats.
    async fn execute<C>(
        &self,
        client: &mut C,
        session: &Session,
        statement: &Statement,
        params: Vec<ScalarValue>,
        format: Option<&Format>,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match statement {
            Statement::Query(sql) => {
                let output = self
                    .engine
                    .sql_postgres(sql, &session.scope, params)
                    .await
                    .map_err(query_error)?;
                metrics::counter!("wattline_queries_total", "protocol" => "postgres").increment(1);
                if output.truncated {
                    let rows: usize = output.batches.iter().map(|b| b.num_rows()).sum();
                    let notice = ErrorInfo::new(
                        "NOTICE".into(),
                        "01000".into(),
                        format!(
                            "the answer was cut at {rows} rows (query.max_rows); \
                             narrow the query or aggregate"
                        ),
                    );
                    client
                        .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                            notice,
                        )))
                        .await?;
                }
                let fields = Arc::new(encode::fields(&output.schema, format));
                let rows = encode::rows(output.batches, fields.clone());
                Response::Query(QueryResponse::new(fields, rows))
            }
            Statement::Show(name, value) => {
                let schema = show_schema(name);
                let fields = Arc::new(encode::fields(&schema, format));
                let batch = arrow::array::RecordBatch::try_new(
                    Arc::new(schema),
                    vec![Arc::new(arrow::array::StringArray::from(vec![
                        value.clone(),
                    ]))],
                )
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                let rows = encode::rows(vec![batch], fields.clone());
                Response::Query(QueryResponse::new(fields, rows))
            }
            Statement::Ack(tag) => Response::Execution(Tag::new(tag)),
            Statement::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Statement::End(tag) => Response::TransactionEnd(Tag::new(tag)),
            Statement::Unsupported(message) => return Err(error("0A000", message.clone())),
        })
    }
}

fn show_schema(name: &str) -> Schema {
    Schema::new(vec![Field::new(name, DataType::Utf8, false)])
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let mut responses = Vec::new();
        // Like PostgreSQL, the statements after a failed one are not run.
        for sql in statements::split(query) {
            let statement = statements::classify(sql);
            match self
                .execute(client, &session, &statement, Vec::new(), None)
                .await
            {
                Ok(response) => responses.push(response),
                Err(e) => {
                    responses.push(Response::Error(Box::new(ErrorInfo::from(e))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

/// Plans statements as the extended protocol parses them.
pub(crate) struct Parser {
    engine: Arc<QueryEngine>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client)?;
        let statement = match statements::split(sql).as_slice() {
            [] => return Ok(None),
            [one] => statements::classify(one),
            _ => {
                return Err(error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement".into(),
                ));
            }
        };
        let (schema, targets) = match &statement {
            Statement::Query(sql) => {
                let described = self
                    .engine
                    .describe_postgres(sql, &session.scope)
                    .await
                    .map_err(query_error)?;
                (Some(described.schema), described.params)
            }
            Statement::Show(name, _) => (Some(Arc::new(show_schema(name))), Vec::new()),
            _ => (None, Vec::new()),
        };
        let param_types = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| params::param_type(t.as_ref()))
            })
            .collect();
        Ok(Some(Prepared {
            statement,
            schema,
            param_types,
            targets,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt
            .schema
            .as_ref()
            .map(|s| encode::fields(s, column_format))
            .unwrap_or_default())
    }
}

/// The extended protocol: [`Parser`] plans, [`Queries`] runs.
pub(crate) struct Extended {
    queries: Arc<Queries>,
    parser: Arc<Parser>,
}

impl Extended {
    pub(crate) fn new(queries: Arc<Queries>) -> Self {
        let parser = Arc::new(Parser {
            engine: queries.engine.clone(),
        });
        Self { queries, parser }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let prepared = &portal.statement.statement;
        let values = params::bind(portal, &prepared.param_types, &prepared.targets)?;
        self.queries
            .execute(
                client,
                &session,
                &prepared.statement,
                values,
                Some(&portal.result_column_format),
            )
            .await
    }
}
