//! The derived columns of the `readings` table: `value_kwh` (the energy of
//! the interval starting at the reading, what the rollups count), `value`
//! (what the meter sent) and `quality` (what became of the reading).
//!
//! Chunk files and memtables hold what the meter sent. For interval meters
//! that is the interval energy, so the columns are filled as the rows
//! stream past ([`DerivedReadingsExec::as_sent`]). A register's or power
//! meter's energy depends on its neighbours, so those rows arrive sorted by
//! sensor and time, read from up to the meter's reach around the query's
//! range, and are derived one sensor's series at a time with the rollups'
//! own function ([`DerivedReadingsExec::derive`]); only the current
//! sensor's rows are held. The rows outside the range are dropped by the
//! query's own filters above the scan.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, RecordBatch, RecordBatchOptions, StringViewArray,
};
use arrow::datatypes::{Float64Type, SchemaRef, TimestampMillisecondType};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr,
    PlanProperties,
};
use futures::{Stream, StreamExt};
use wattline_storage::{Meter, Quality, derive};

/// Memory a held row takes besides its batch: its place in the series,
/// its derived energy and quality, and the derivation's own output.
const ROW_BYTES: usize = 72;

/// What an interval meter's reading is.
const AS_SENT: &str = "measured";

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Out {
    /// The input column at this position, as it is.
    Input(usize),
    /// Interval energy (`value_kwh`).
    Energy,
    /// The value as sent (`value`).
    Value,
    /// What became of the reading (`quality`).
    Quality,
}

/// Positions in the input (the stored columns read) and what to output.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) sensor: Option<usize>,
    pub(crate) ts: Option<usize>,
    /// The stored value; needed for `Energy` and `Value`.
    pub(crate) value: Option<usize>,
    pub(crate) output: Vec<Out>,
}

/// Meter settings of the sensors to derive, by id.
pub(crate) type Meters = HashMap<String, Meter>;

#[derive(Debug)]
pub(crate) struct DerivedReadingsExec {
    input: Arc<dyn ExecutionPlan>,
    layout: Layout,
    /// `None`: rows count as sent.
    meters: Option<Arc<Meters>>,
    properties: Arc<PlanProperties>,
}

impl DerivedReadingsExec {
    /// Rows of interval meters, as they stream, partitions kept.
    pub(crate) fn as_sent(
        input: Arc<dyn ExecutionPlan>,
        layout: Layout,
        schema: SchemaRef,
    ) -> DfResult<Self> {
        let partitions = input.output_partitioning().partition_count();
        Self::new(input, layout, None, schema, partitions)
    }

    /// Rows of `meters`' sensors; `input` is one partition sorted by
    /// sensor and time, and has the sensor, time and value columns.
    pub(crate) fn derive(
        input: Arc<dyn ExecutionPlan>,
        layout: Layout,
        meters: Arc<Meters>,
        schema: SchemaRef,
    ) -> DfResult<Self> {
        if input.output_partitioning().partition_count() != 1
            || layout.sensor.is_none()
            || layout.ts.is_none()
            || layout.value.is_none()
        {
            return Err(DataFusionError::Internal(
                "deriving readings needs one sorted partition with sensor, time and value".into(),
            ));
        }
        Self::new(input, layout, Some(meters), schema, 1)
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        layout: Layout,
        meters: Option<Arc<Meters>>,
        schema: SchemaRef,
        partitions: usize,
    ) -> DfResult<Self> {
        if schema.fields().len() != layout.output.len() {
            return Err(DataFusionError::Internal(
                "derived readings: the layout does not match the schema".into(),
            ));
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            layout,
            meters,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for DerivedReadingsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.meters {
            Some(_) => write!(f, "DerivedReadingsExec: derive"),
            None => write!(f, "DerivedReadingsExec: as sent"),
        }
    }
}

impl ExecutionPlan for DerivedReadingsExec {
    fn name(&self) -> &str {
        "DerivedReadingsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// None: the columns are computed, not expressions.
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return Err(DataFusionError::Internal(
                "DerivedReadingsExec has one child".into(),
            ));
        };
        let partitions = self.properties.output_partitioning().partition_count();
        Ok(Arc::new(Self::new(
            input,
            self.layout.clone(),
            self.meters.clone(),
            self.schema(),
            partitions,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let pool = context.memory_pool().clone();
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let layout = self.layout.clone();
        let out_schema = schema.clone();
        match &self.meters {
            None => {
                let stream = input.map(move |batch| {
                    let batch = batch?;
                    let value = layout.value.map(|v| batch.column(v).clone());
                    let quality = as_sent_quality(batch.num_rows());
                    assemble(&out_schema, &layout, &batch, value.clone(), value, quality)
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
            }
            Some(meters) => {
                let reservation = MemoryConsumer::new("DerivedReadingsExec").register(&pool);
                let deriver = Deriver::new(layout, meters.clone(), out_schema, reservation);
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    derived_stream(input, deriver),
                )))
            }
        }
    }
}

fn as_sent_quality(rows: usize) -> ArrayRef {
    Arc::new(StringViewArray::from_iter_values(std::iter::repeat_n(
        AS_SENT, rows,
    )))
}

/// The output batch of `batch`'s rows, given their energy, value and
/// quality columns.
fn assemble(
    schema: &SchemaRef,
    layout: &Layout,
    batch: &RecordBatch,
    energy: Option<ArrayRef>,
    value: Option<ArrayRef>,
    quality: ArrayRef,
) -> DfResult<RecordBatch> {
    let missing = || DataFusionError::Internal("derived readings: value not scanned".into());
    let columns = layout
        .output
        .iter()
        .map(|o| match o {
            Out::Input(i) => Ok(batch.column(*i).clone()),
            Out::Energy => energy.clone().ok_or_else(missing),
            Out::Value => value.clone().ok_or_else(missing),
            Out::Quality => Ok(quality.clone()),
        })
        .collect::<DfResult<Vec<_>>>()?;
    // Zero columns when the query counts rows only.
    let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &rows,
    )?)
}

/// The derived stream of sorted `input`: batches are emitted once every
/// row in them has its sensor's series complete.
fn derived_stream(
    input: SendableRecordBatchStream,
    deriver: Deriver,
) -> impl Stream<Item = DfResult<RecordBatch>> + Send {
    futures::stream::unfold(
        (input, deriver, VecDeque::new(), false),
        |(mut input, mut deriver, mut ready, mut done)| async move {
            loop {
                if let Some(batch) = ready.pop_front() {
                    return Some((Ok(batch), (input, deriver, ready, done)));
                }
                if done {
                    return None;
                }
                let step = match input.next().await {
                    Some(Ok(batch)) => deriver.push(batch),
                    Some(Err(e)) => Err(e),
                    None => {
                        done = true;
                        deriver.finish()
                    }
                };
                match step {
                    Ok(out) => ready.extend(out),
                    Err(e) => {
                        done = true;
                        return Some((Err(e), (input, deriver, ready, done)));
                    }
                }
            }
        },
    )
}

/// Derives series of sorted rows as they arrive.
struct Deriver {
    layout: Layout,
    meters: Arc<Meters>,
    schema: SchemaRef,
    /// Input batches not yet emitted, oldest first, with the bytes
    /// reserved for each.
    pending: VecDeque<(RecordBatch, usize)>,
    /// What `pending` and the series take, from the query's memory pool:
    /// one sensor's series is held whole, and a series larger than the
    /// pool allows is an error, not unbounded memory.
    reservation: MemoryReservation,
    /// Derived energy and quality of the rows of `pending`, in order.
    energy: Vec<Option<f64>>,
    quality: Vec<Quality>,
    /// The current sensor's series so far.
    sensor: Option<String>,
    series: Vec<(i64, f64)>,
}

impl Deriver {
    fn new(
        layout: Layout,
        meters: Arc<Meters>,
        schema: SchemaRef,
        reservation: MemoryReservation,
    ) -> Self {
        Self {
            layout,
            meters,
            schema,
            pending: VecDeque::new(),
            reservation,
            energy: Vec::new(),
            quality: Vec::new(),
            sensor: None,
            series: Vec::new(),
        }
    }

    fn push(&mut self, batch: RecordBatch) -> DfResult<Vec<RecordBatch>> {
        let column = |i: Option<usize>| batch.column(i.expect("checked in derive()"));
        let sensors = column(self.layout.sensor)
            .as_string_view_opt()
            .ok_or_else(|| {
                DataFusionError::Internal("derived readings: sensor_id is not Utf8View".into())
            })?;
        let ts = column(self.layout.ts).as_primitive::<TimestampMillisecondType>();
        let values = column(self.layout.value).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let id = sensors.value(i);
            if self.sensor.as_deref() != Some(id) {
                self.end_series();
                self.sensor = Some(id.to_owned());
            }
            self.series.push((ts.value(i), values.value(i)));
        }
        let bytes = batch.get_array_memory_size() + batch.num_rows() * ROW_BYTES;
        self.reservation.try_grow(bytes)?;
        self.pending.push_back((batch, bytes));
        self.complete()
    }

    fn finish(&mut self) -> DfResult<Vec<RecordBatch>> {
        self.end_series();
        self.complete()
    }

    /// Derives the current series.
    fn end_series(&mut self) {
        let Some(id) = self.sensor.take() else {
            return;
        };
        let series = std::mem::take(&mut self.series);
        match self.meters.get(&id) {
            Some(meter) => {
                for d in derive(meter, &series) {
                    self.energy.push(d.kwh);
                    self.quality.push(d.quality);
                }
            }
            None => {
                self.energy.extend(series.iter().map(|p| Some(p.1)));
                self.quality
                    .extend(std::iter::repeat_n(Quality::Measured, series.len()));
            }
        }
    }

    /// The pending batches whose rows are all derived.
    fn complete(&mut self) -> DfResult<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some((front, _)) = self.pending.front() {
            let rows = front.num_rows();
            if self.energy.len() < rows {
                break;
            }
            let (batch, bytes) = self.pending.pop_front().expect("front exists");
            self.reservation.shrink(bytes);
            let energy: Float64Array = self.energy.drain(..rows).collect();
            let quality =
                StringViewArray::from_iter_values(self.quality.drain(..rows).map(|q| q.name()));
            let value = batch.column(self.layout.value.expect("checked")).clone();
            out.push(assemble(
                &self.schema,
                &self.layout,
                &batch,
                Some(Arc::new(energy)),
                Some(value),
                Arc::new(quality),
            )?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::memory::MemorySourceConfig;
    use futures::TryStreamExt;
    use wattline_storage::MeterType;

    /// Rows of `ts` and `value` columns as the derivation reads them (tests).
    fn rows(batch: &RecordBatch, ts: usize, value: usize) -> Vec<(i64, Option<f64>)> {
        let t = batch
            .column(ts)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let v = batch.column(value).as_primitive::<Float64Type>();
        (0..batch.num_rows())
            .map(|i| (t.value(i), v.is_valid(i).then(|| v.value(i))))
            .collect()
    }

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8View, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("value_kwh", DataType::Float64, false),
        ]))
    }

    fn output_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("value_kwh", DataType::Float64, true),
            Field::new("value", DataType::Float64, false),
            Field::new("quality", DataType::Utf8View, false),
        ]))
    }

    fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn layout() -> Layout {
        Layout {
            sensor: Some(0),
            ts: Some(1),
            value: Some(2),
            output: vec![Out::Input(1), Out::Energy, Out::Value, Out::Quality],
        }
    }

    async fn run(exec: DerivedReadingsExec) -> Vec<RecordBatch> {
        exec.execute(0, Arc::new(TaskContext::default()))
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// A register series split across batches at every possible point,
    /// between two interval sensors, gives each row its own derived value.
    #[tokio::test]
    async fn series_split_across_batches_derive_as_one() {
        let q = 900_000;
        let register = Meter {
            meter_type: MeterType::Cumulative,
            ..Meter::default()
        };
        let meters: Meters = [("r".to_string(), register)].into();
        let mut rows = vec![("a", 0, 5.0)];
        for (i, v) in [10.0, 11.5, 0.5, 12.0, 13.0].into_iter().enumerate() {
            rows.push(("r", i as i64 * q, v));
        }
        rows.push(("z", 0, 7.0));
        for cut in 1..rows.len() {
            let input = MemorySourceConfig::try_new_exec(
                &[vec![batch(&rows[..cut]), batch(&rows[cut..])]],
                input_schema(),
                None,
            )
            .unwrap();
            let exec = DerivedReadingsExec::derive(
                input,
                layout(),
                Arc::new(meters.clone()),
                output_schema(),
            )
            .unwrap();
            let out = run(exec).await;
            let got: Vec<_> = out.iter().flat_map(rows_of).collect();
            assert_eq!(
                got,
                vec![
                    (0, Some(5.0), 5.0, "measured".to_string()),
                    (0, Some(1.5), 10.0, "measured".into()),
                    // 0.5 is a glitch (a drop that recovers): skipped.
                    (q, Some(0.5), 11.5, "measured".into()),
                    (2 * q, None, 0.5, "glitch".into()),
                    (3 * q, Some(1.0), 12.0, "measured".into()),
                    (4 * q, None, 13.0, "gap".into()),
                    (0, Some(7.0), 7.0, "measured".into()),
                ],
                "cut at {cut}"
            );
        }
    }

    fn rows_of(b: &RecordBatch) -> Vec<(i64, Option<f64>, f64, String)> {
        let energy = rows(b, 0, 1);
        let value = b.column(2).as_primitive::<Float64Type>();
        let quality = b.column(3).as_string_view();
        energy
            .into_iter()
            .enumerate()
            .map(|(i, (t, e))| (t, e, value.value(i), quality.value(i).to_string()))
            .collect()
    }

    /// One register's series is held whole until it ends, within the
    /// query's memory pool: a series too long for it is refused.
    #[tokio::test]
    async fn a_series_larger_than_the_memory_pool_is_an_error() {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        let register = Meter {
            meter_type: MeterType::Cumulative,
            ..Meter::default()
        };
        let meters: Meters = [("r".to_string(), register)].into();
        let batches: Vec<RecordBatch> = (0..100)
            .map(|b| {
                let rows: Vec<(&str, i64, f64)> = (0..1000)
                    .map(|i| ("r", (b * 1000 + i) * 900_000, (b * 1000 + i) as f64))
                    .collect();
                batch(&rows)
            })
            .collect();
        for (limit, fits) in [(1 << 30, true), (1 << 20, false)] {
            let input = MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&batches),
                input_schema(),
                None,
            )
            .unwrap();
            let exec = DerivedReadingsExec::derive(
                input,
                layout(),
                Arc::new(meters.clone()),
                output_schema(),
            )
            .unwrap();
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()
                .unwrap();
            let context = Arc::new(TaskContext::default().with_runtime(runtime));
            let out: Result<Vec<RecordBatch>, _> =
                exec.execute(0, context).unwrap().try_collect().await;
            match out {
                Ok(b) => {
                    assert!(fits);
                    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);
                }
                Err(e) => {
                    assert!(!fits);
                    assert!(matches!(e, DataFusionError::ResourcesExhausted(_)), "{e}");
                }
            }
        }
    }

    #[tokio::test]
    async fn as_sent_copies_the_value() {
        let input = MemorySourceConfig::try_new_exec(
            &[vec![batch(&[("a", 0, 1.25), ("b", 5, 2.0)])]],
            input_schema(),
            None,
        )
        .unwrap();
        let exec = DerivedReadingsExec::as_sent(input, layout(), output_schema()).unwrap();
        let got: Vec<_> = run(exec).await.iter().flat_map(rows_of).collect();
        assert_eq!(
            got,
            vec![
                (0, Some(1.25), 1.25, "measured".to_string()),
                (5, Some(2.0), 2.0, "measured".into())
            ]
        );
    }
}
