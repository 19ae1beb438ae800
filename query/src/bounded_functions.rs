//! String functions whose result can be far larger than their input
//! (`repeat`, `lpad`, `rpad`), bounded by `query.memory_limit`.
//!
//! The memory pool sees operators' buffers, not what a scalar function
//! allocates: `repeat('x', 2000000000)` would allocate 2 GB before any
//! limit looked. Each of these functions is replaced in every session by a
//! wrapper that computes the size of the result from its arguments first
//! and refuses it past the limit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::compute::kernels::length::length;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// The functions replaced.
const AMPLIFYING: &[&str] = &["repeat", "lpad", "rpad"];

/// Replaces the amplifying functions of `ctx` by bounded ones.
pub(crate) fn register(ctx: &SessionContext, max_bytes: usize) {
    for name in AMPLIFYING {
        let Some(inner) = ctx.state().scalar_functions().get(*name).cloned() else {
            continue;
        };
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            max_bytes: max_bytes as u64,
        }));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    max_bytes: u64,
}

impl Bounded {
    /// An upper bound of the result's bytes: `repeat` makes
    /// `len(s) * n` bytes a row, `lpad`/`rpad` `n` characters (four bytes
    /// at most each when a fill is given, one otherwise, plus the input).
    fn result_bytes(&self, args: &ScalarFunctionArgs) -> DfResult<u64> {
        let rows = args.number_rows.max(1);
        let Some(count) = args.args.get(1) else {
            return Ok(0);
        };
        let counts = as_i64(&count.to_array(rows)?)?;
        let mut total: u64 = 0;
        if self.inner.name() == "repeat" {
            let lengths = as_i64(&length(&args.args[0].to_array(rows)?)?)?;
            for i in 0..counts.len().min(lengths.len()) {
                if counts.is_valid(i) && lengths.is_valid(i) {
                    let n = counts.value(i).max(0) as u64;
                    total = total.saturating_add(n.saturating_mul(lengths.value(i).max(0) as u64));
                }
            }
        } else {
            let width = if args.args.len() > 2 { 4 } else { 1 };
            for i in 0..counts.len() {
                if counts.is_valid(i) {
                    let n = counts.value(i).max(0) as u64;
                    total = total.saturating_add(n.saturating_mul(width));
                }
            }
        }
        Ok(total)
    }
}

fn as_i64(array: &ArrayRef) -> DfResult<Int64Array> {
    let cast = arrow::compute::cast(array, &DataType::Int64)?;
    cast.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("cast to Int64 gave another type".into()))
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
        if bytes > self.max_bytes {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {bytes} bytes of text, more than query.memory_limit ({} bytes)",
                self.inner.name(),
                self.max_bytes
            )));
        }
        self.inner.invoke_with_args(args)
    }
}
