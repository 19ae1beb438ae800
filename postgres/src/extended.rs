//! The extended query protocol: Parse plans a statement to tell its
//! parameter and result types; Bind checks and keeps the values; Execute
//! plans it again (so a prepared statement reads the newest data) and runs
//! it through [`Queries`].
//!
//! What a session may keep is bounded: [`MAX_STATEMENTS`] named
//! statements and [`MAX_PORTALS`] named portals (each portal holds its
//! parameters and, once started, its answer), and Execute's row count is
//! capped at `query.max_rows` (the protocol library reserves room for it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Execute, Parse, ParseComplete,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};

use crate::encode;
use crate::errors::{error, query_error};
use crate::handler::{Queries, show_schema};
use crate::params;
use crate::statements::{self, Statement};

/// Named prepared statements one session may keep.
pub(crate) const MAX_STATEMENTS: usize = 256;
/// Named portals one session may keep.
pub(crate) const MAX_PORTALS: usize = 8;

/// A parsed statement.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    statement: Statement,
    /// The columns it answers; `None` for statements that answer none.
    schema: Option<SchemaRef>,
    /// Parameter types as told to the client (its own where it gave them).
    param_types: Vec<Type>,
    /// The types parameters are bound as: the query's, else the client's.
    targets: Vec<Option<DataType>>,
}

/// Plans statements as the extended protocol parses them.
pub(crate) struct Parser {
    queries: Arc<Queries>,
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
        let session = self.queries.session(client)?;
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
        let (schema, inferred) = match &statement {
            Statement::Query(sql) => {
                let described = self
                    .queries
                    .engine
                    .describe_postgres(sql, &session.scope)
                    .await
                    .map_err(query_error)?;
                (Some(described.schema), described.params)
            }
            Statement::Show(name, _) => (Some(Arc::new(show_schema(name))), Vec::new()),
            _ => (None, Vec::new()),
        };
        let declared = |i: usize| types.get(i).cloned().flatten();
        let targets: Vec<Option<DataType>> = inferred
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.or_else(|| declared(i).and_then(|d| params::arrow_type(&d))))
            .collect();
        let param_types = targets
            .iter()
            .enumerate()
            .map(|(i, t)| declared(i).unwrap_or_else(|| params::param_type(t.as_ref())))
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

/// The names a session keeps, counted against the caps.
#[derive(Default)]
struct Named {
    statements: Mutex<HashSet<String>>,
    portals: Mutex<HashSet<String>>,
}

impl Named {
    fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Named> {
        client
            .session_extensions()
            .get_or_insert_with(Named::default)
    }

    /// Notes `name` in `set`, refusing a new one past `cap`.
    fn note(set: &Mutex<HashSet<String>>, name: &str, cap: usize, what: &str) -> PgWireResult<()> {
        let mut set = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.contains(name) && set.len() >= cap {
            return Err(error(
                "54000",
                format!("a session may keep at most {cap} named {what}; close some first"),
            ));
        }
        set.insert(name.to_owned());
        Ok(())
    }

    fn forget(set: &Mutex<HashSet<String>>, name: &str) {
        set.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
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
            queries: queries.clone(),
        });
        Self { queries, parser }
    }
}

/// Format codes are 0 (text) or 1 (binary); parameter codes are none, one
/// for all, or one per parameter (as PostgreSQL checks).
fn check_formats(bind: &Bind) -> PgWireResult<()> {
    let codes = bind
        .parameter_format_codes
        .iter()
        .chain(&bind.result_column_format_codes);
    if codes.into_iter().any(|c| !matches!(c, 0 | 1)) {
        return Err(error(
            "08P01",
            "format codes are 0 (text) or 1 (binary)".into(),
        ));
    }
    let n = bind.parameter_format_codes.len();
    if n > 1 && n != bind.parameters.len() {
        return Err(error(
            "08P01",
            format!(
                "bind message has {n} parameter formats but {} parameters",
                bind.parameters.len()
            ),
        ));
    }
    Ok(())
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if message.name.is_some() {
            Named::note(
                &Named::of(client).statements,
                &name,
                MAX_STATEMENTS,
                "statements",
            )?;
        }
        match StoredStatement::parse(client, &message, self.parser.clone()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        check_formats(&message)?;
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.portal_name.is_some() {
            Named::note(
                &Named::of(client).portals,
                portal_name,
                MAX_PORTALS,
                "portals",
            )?;
        }
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) if message.parameters.is_empty() => {
                client.portal_store().put_empty_portal(portal_name);
            }
            Some(Entry::Empty) => {
                return Err(error(
                    "08P01",
                    "bind message supplies parameters to an empty statement".into(),
                ));
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let named = Named::of(client);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                Named::forget(&named.statements, name);
                client.portal_store().rm_statement(name);
            }
            TARGET_TYPE_BYTE_PORTAL => {
                Named::forget(&named.portals, name);
                client.portal_store().rm_portal(name);
            }
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // 0 (or less): all rows. The library reserves room for the count
        // asked for, so it may not exceed what an answer can hold.
        let cap = i32::try_from(self.queries.engine.limits().max_rows).unwrap_or(i32::MAX);
        message.max_rows = if message.max_rows <= 0 {
            0
        } else {
            message.max_rows.min(cap)
        };
        self._on_execute(client, message).await
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
        let session = self.queries.session(client)?;
        let prepared = &portal.statement.statement;
        let values = params::bind(portal, &prepared.param_types, &prepared.targets)?;
        let (response, _) = self
            .queries
            .execute(
                &session,
                &prepared.statement,
                values,
                prepared.schema.as_ref(),
                Some(&portal.result_column_format),
            )
            .await?;
        Ok(response)
    }
}
