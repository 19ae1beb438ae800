//! String functions whose result can be far larger than their input,
//! bounded by `query.memory_limit`.
//!
//! The memory pool sees operators' buffers, not what an expression
//! allocates: `repeat('x', 2000000000)` would allocate 2 GB before any
//! limit looked, and `concat` or `||` over such results multiplies it. So:
//!
//! - `repeat`, `lpad`, `rpad`, `concat`, `concat_ws`, `replace`,
//!   `regexp_replace` and `overlay` are replaced in every session by a
//!   wrapper that computes an upper bound of its result from its arguments
//!   and refuses a call past its share;
//! - the share is a quarter of `query.memory_limit` divided by the number
//!   of such calls and `||` operators in the plan, so all of them together,
//!   alive at once while one batch is evaluated, stay within that quarter
//!   (`||` itself only adds up its inputs, which are bounded this way or
//!   are stored values and literals);
//! - recursive CTEs, the one way to apply them without writing each
//!   application in the query, are off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::compute::kernels::length::length;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// The functions replaced.
const AMPLIFYING: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "concat",
    "concat_ws",
    "replace",
    "regexp_replace",
    "overlay",
];

/// The bytes one call of a bounded function may build; shared by the
/// wrappers of one session and set from the plan before it runs.
#[derive(Debug, Clone)]
pub(crate) struct CallShare {
    total: u64,
    per_call: Arc<AtomicU64>,
}

impl CallShare {
    /// All calls together may build `total` bytes.
    pub(crate) fn new(total: usize) -> Self {
        Self {
            total: total as u64,
            per_call: Arc::new(AtomicU64::new(total as u64)),
        }
    }

    /// Divides the total by the calls and `||` operators in `plan`.
    pub(crate) fn fit_to(&self, plan: &LogicalPlan) -> DfResult<()> {
        let mut calls = 1u64;
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    match e {
                        Expr::ScalarFunction(f) if AMPLIFYING.contains(&f.name()) => calls += 1,
                        Expr::BinaryExpr(BinaryExpr {
                            op: Operator::StringConcat,
                            ..
                        }) => calls += 1,
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        self.per_call.store(self.total / calls, Ordering::Relaxed);
        Ok(())
    }
}

/// Replaces the amplifying functions of `ctx` by bounded ones.
pub(crate) fn register(ctx: &SessionContext, share: &CallShare) {
    for name in AMPLIFYING {
        // Read in place: `ctx.state()` would copy the whole session state
        // (every function registry) for each name.
        let inner = ctx
            .state_ref()
            .read()
            .scalar_functions()
            .get(*name)
            .cloned();
        let Some(inner) = inner else {
            continue;
        };
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            share: share.per_call.clone(),
        }));
    }
}

#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    share: Arc<AtomicU64>,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.share, &other.share)
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

/// An argument, per row, without expanding a scalar to a column.
enum Arg {
    Scalar(Option<i64>),
    Column(Int64Array),
}

impl Arg {
    fn at(&self, row: usize) -> Option<i64> {
        match self {
            Arg::Scalar(v) => *v,
            Arg::Column(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
        }
    }

    /// The argument's values as integers (counts and positions).
    fn number(v: &ColumnarValue) -> DfResult<Self> {
        Ok(match v {
            ColumnarValue::Scalar(s) => {
                let cast = s.cast_to(&DataType::Int64)?;
                Arg::Scalar(match cast {
                    ScalarValue::Int64(v) => v,
                    _ => None,
                })
            }
            ColumnarValue::Array(a) => Arg::Column(as_i64(a)?),
        })
    }

    /// The byte lengths of a string argument.
    fn byte_length(v: &ColumnarValue) -> DfResult<Self> {
        Ok(match v {
            ColumnarValue::Scalar(s) => Arg::Scalar(match s {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_ref().map(|s| s.len() as i64)
                }
                other => Some(other.to_string().len() as i64),
            }),
            ColumnarValue::Array(a) => match length(a) {
                Ok(lengths) => Arg::Column(as_i64(&lengths)?),
                // Not a string: its text is about as long as its value.
                Err(_) => Arg::Scalar(Some(24)),
            },
        })
    }
}

fn as_i64(array: &ArrayRef) -> DfResult<Int64Array> {
    let cast = arrow::compute::cast(array, &DataType::Int64)?;
    cast.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("cast to Int64 gave another type".into()))
}

fn bytes(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

impl Bounded {
    /// An upper bound of the bytes the call builds, over all rows.
    fn result_bytes(&self, args: &ScalarFunctionArgs) -> DfResult<u64> {
        let rows = args.number_rows.max(1);
        let lens = |i: usize| args.args.get(i).map(Arg::byte_length).transpose();
        let nums = |i: usize| args.args.get(i).map(Arg::number).transpose();
        let per_row: Box<dyn Fn(usize) -> u64> = match self.inner.name() {
            "repeat" => {
                let (s, n) = (lens(0)?, nums(1)?);
                Box::new(move |r| {
                    let s = s.as_ref().map_or(0, |a| bytes(a.at(r)));
                    s.saturating_mul(n.as_ref().map_or(0, |a| bytes(a.at(r))))
                })
            }
            "lpad" | "rpad" => {
                // Characters of up to four bytes when a fill is given.
                let (s, n, width) = (lens(0)?, nums(1)?, if args.args.len() > 2 { 4 } else { 1 });
                Box::new(move |r| {
                    let target = n.as_ref().map_or(0, |a| bytes(a.at(r)));
                    target
                        .saturating_mul(width)
                        .saturating_add(s.as_ref().map_or(0, |a| bytes(a.at(r))))
                })
            }
            "replace" => {
                let (s, from, to) = (lens(0)?, lens(1)?, lens(2)?);
                Box::new(move |r| {
                    let s = s.as_ref().map_or(0, |a| bytes(a.at(r)));
                    let from = from.as_ref().map_or(0, |a| bytes(a.at(r))).max(1);
                    let to = to.as_ref().map_or(0, |a| bytes(a.at(r)));
                    s.saturating_add((s / from).saturating_mul(to))
                })
            }
            "regexp_replace" => {
                // An empty match at every position, each replaced.
                let (s, rep) = (lens(0)?, lens(2)?);
                Box::new(move |r| {
                    let s = s.as_ref().map_or(0, |a| bytes(a.at(r)));
                    let rep = rep.as_ref().map_or(0, |a| bytes(a.at(r)));
                    s.saturating_add(s.saturating_add(1).saturating_mul(rep))
                })
            }
            _ => {
                // concat, concat_ws, overlay: at most all inputs together,
                // a separator between each for concat_ws.
                let all: Vec<Arg> = args
                    .args
                    .iter()
                    .map(Arg::byte_length)
                    .collect::<DfResult<_>>()?;
                let separators = args.args.len() as u64;
                Box::new(move |r| {
                    let sum = all
                        .iter()
                        .map(|a| bytes(a.at(r)))
                        .fold(0u64, u64::saturating_add);
                    sum.saturating_mul(2.min(separators).max(1))
                })
            }
        };
        Ok((0..rows).map(per_row).fold(0u64, u64::saturating_add))
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let bytes = self.result_bytes(&args)?;
        let share = self.share.load(Ordering::Relaxed);
        if bytes > share {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() could build {bytes} bytes of text, more than its share of \
                 query.memory_limit ({share} bytes)",
                self.inner.name(),
            )));
        }
        self.inner.invoke_with_args(args)
    }
}
