//! Running statements, and the simple query protocol.
//!
//! Every statement runs in the session's scope through the same engine and
//! guards as `POST /api/v1/sql` (read-only plan, size, memory, rows, time,
//! per-tenant concurrency), after checking that the session's key is still
//! valid. An answer past `query.max_rows` is an error here (PostgreSQL
//! clients have no way to see that rows were left out). A cancel request
//! drops the running statement, which stops its query.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use futures::Sink;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use wattline_query::{QueryEngine, QueryOutput};
use wattline_storage::Catalog;

use crate::auth::{Session, session_of};
use crate::encode;
use crate::errors::{error, query_error};
use crate::statements::{self, Statement};

/// Statements one simple-protocol message may hold.
const MAX_STATEMENTS_PER_MESSAGE: usize = 32;

/// Runs statements for the sessions of one server.
pub(crate) struct Queries {
    pub(crate) engine: Arc<QueryEngine>,
    pub(crate) catalog: Arc<Catalog>,
}

impl Queries {
    /// The session of `client`, whose key must still be valid.
    pub(crate) fn session<C: ClientInfo + ?Sized>(&self, client: &C) -> PgWireResult<Session> {
        session_of(client, &self.catalog)
    }

    /// Runs one statement. `described`: the columns a Describe announced,
    /// which the answer is sent as; `format`: the Bind's result formats.
    pub(crate) async fn execute(
        &self,
        session: &Session,
        statement: &Statement,
        params: Vec<ScalarValue>,
        described: Option<&SchemaRef>,
        format: Option<&Format>,
    ) -> PgWireResult<(Response, usize)> {
        let output = match statement {
            Statement::Query(sql) => {
                let output = self
                    .engine
                    .sql_postgres(sql, &session.scope, params)
                    .await
                    .map_err(query_error)?;
                metrics::counter!("wattline_queries_total", "protocol" => "postgres").increment(1);
                if output.truncated {
                    return Err(error(
                        "54000",
                        format!(
                            "the answer has more than {} rows (query.max_rows); \
                             narrow the query, aggregate, or add a LIMIT",
                            self.engine.limits().max_rows
                        ),
                    ));
                }
                output
            }
            Statement::Show(name, value) => {
                let schema = Arc::new(show_schema(name));
                let column = Arc::new(StringArray::from(vec![value.clone()]));
                let batch = RecordBatch::try_new(schema.clone(), vec![column])
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                QueryOutput {
                    schema,
                    batches: vec![batch],
                    truncated: false,
                }
            }
            Statement::Ack(tag) => return Ok((Response::Execution(Tag::new(tag)), 0)),
            Statement::Begin => return Ok((Response::TransactionStart(Tag::new("BEGIN")), 0)),
            Statement::End(tag) => return Ok((Response::TransactionEnd(Tag::new(tag)), 0)),
            Statement::Unsupported(message) => return Err(error("0A000", message.clone())),
        };
        let bytes = output
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let schema = described.unwrap_or(&output.schema);
        let batches = encode::conform(output.batches, schema)?;
        let fields = Arc::new(encode::fields(schema, format));
        let rows = encode::rows(batches, fields.clone());
        Ok((Response::Query(QueryResponse::new(fields, rows)), bytes))
    }
}

pub(crate) fn show_schema(name: &str) -> Schema {
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
        let session = self.session(client)?;
        let statements = statements::split(query);
        if statements.len() > MAX_STATEMENTS_PER_MESSAGE {
            return Err(error(
                "54000",
                format!("a message may hold at most {MAX_STATEMENTS_PER_MESSAGE} statements"),
            ));
        }
        // The answers are all sent after the last statement: together they
        // may take what one answer may (a quarter of query.memory_limit).
        let budget = self.engine.limits().memory_limit / 4;
        let mut held = 0usize;
        let mut responses = Vec::new();
        // Like PostgreSQL, the statements after a failed one are not run.
        for sql in statements {
            let statement = statements::classify(sql);
            let result = self
                .execute(&session, &statement, Vec::new(), None, None)
                .await
                .and_then(|(response, bytes)| {
                    held = held.saturating_add(bytes);
                    if held > budget {
                        return Err(error(
                            "53200",
                            format!(
                                "the answers of this message take more than {budget} bytes \
                                 (a quarter of query.memory_limit); send the statements one by one"
                            ),
                        ));
                    }
                    Ok(response)
                });
            match result {
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
