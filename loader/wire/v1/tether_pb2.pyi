from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "left_out")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    left_out: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ..., left_out: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("dataset", "shuffle_window_bytes", "filter")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    shuffle_window_bytes: int
    filter: str
    def __init__(self, dataset: _Optional[str] = ..., shuffle_window_bytes: _Optional[int] = ..., filter: _Optional[str] = ...) -> None: ...

class ColumnInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape", "unsupported", "kind", "mean_row_bytes", "source_type", "null_count", "logical", "timezone", "categories", "category_count", "valid_of")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEAN_ROW_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_COUNT_FIELD_NUMBER: _ClassVar[int]
    VALID_OF_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    unsupported: str
    kind: str
    mean_row_bytes: int
    source_type: str
    null_count: int
    logical: str
    timezone: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    category_count: int
    valid_of: str
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., unsupported: _Optional[str] = ..., kind: _Optional[str] = ..., mean_row_bytes: _Optional[int] = ..., source_type: _Optional[str] = ..., null_count: _Optional[int] = ..., logical: _Optional[str] = ..., timezone: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., category_count: _Optional[int] = ..., valid_of: _Optional[str] = ...) -> None: ...

class FillNull(_message.Message):
    __slots__ = ("column", "int_value", "float_value", "bool_value", "text_value")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEXT_VALUE_FIELD_NUMBER: _ClassVar[int]
    column: str
    int_value: int
    float_value: float
    bool_value: bool
    text_value: str
    def __init__(self, column: _Optional[str] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: bool = ..., text_value: _Optional[str] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "format", "num_rows", "columns", "fingerprint", "error", "layout", "classes", "class_counts", "skipped", "snapshot_time", "matching_rows", "left_out")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TIME_FIELD_NUMBER: _ClassVar[int]
    MATCHING_ROWS_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    num_rows: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnInfo]
    fingerprint: str
    error: str
    layout: Layout
    classes: _containers.RepeatedScalarFieldContainer[str]
    class_counts: _containers.RepeatedScalarFieldContainer[int]
    skipped: str
    snapshot_time: float
    matching_rows: int
    left_out: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ..., num_rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnInfo, _Mapping]]] = ..., fingerprint: _Optional[str] = ..., error: _Optional[str] = ..., layout: _Optional[_Union[Layout, _Mapping]] = ..., classes: _Optional[_Iterable[str]] = ..., class_counts: _Optional[_Iterable[int]] = ..., skipped: _Optional[str] = ..., snapshot_time: _Optional[float] = ..., matching_rows: _Optional[int] = ..., left_out: _Optional[_Iterable[str]] = ...) -> None: ...

class Layout(_message.Message):
    __slots__ = ("chunk_rows", "window_rows")
    CHUNK_ROWS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ROWS_FIELD_NUMBER: _ClassVar[int]
    chunk_rows: _containers.RepeatedScalarFieldContainer[int]
    window_rows: int
    def __init__(self, chunk_rows: _Optional[_Iterable[int]] = ..., window_rows: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamStatus(_message.Message):
    __slots__ = ("peer", "dataset", "shards_sent", "bytes_sent", "shards_acked", "in_flight", "credits", "seconds", "producing_seconds", "credit_wait_seconds", "sending_seconds")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SHARDS_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    SHARDS_ACKED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRODUCING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SENDING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    peer: str
    dataset: str
    shards_sent: int
    bytes_sent: int
    shards_acked: int
    in_flight: int
    credits: int
    seconds: float
    producing_seconds: float
    credit_wait_seconds: float
    sending_seconds: float
    def __init__(self, peer: _Optional[str] = ..., dataset: _Optional[str] = ..., shards_sent: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., shards_acked: _Optional[int] = ..., in_flight: _Optional[int] = ..., credits: _Optional[int] = ..., seconds: _Optional[float] = ..., producing_seconds: _Optional[float] = ..., credit_wait_seconds: _Optional[float] = ..., sending_seconds: _Optional[float] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "streams_total", "shards_sent", "bytes_sent", "rows_read", "bytes_read", "streams", "errors")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SHARDS_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    ROWS_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    streams_total: int
    shards_sent: int
    bytes_sent: int
    rows_read: int
    bytes_read: int
    streams: _containers.RepeatedCompositeFieldContainer[StreamStatus]
    errors: int
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., streams_total: _Optional[int] = ..., shards_sent: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., rows_read: _Optional[int] = ..., bytes_read: _Optional[int] = ..., streams: _Optional[_Iterable[_Union[StreamStatus, _Mapping]]] = ..., errors: _Optional[int] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("epoch", "row")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    row: int
    def __init__(self, epoch: _Optional[int] = ..., row: _Optional[int] = ...) -> None: ...

class Cursor(_message.Message):
    __slots__ = ("epoch", "sequence")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sequence: int
    def __init__(self, epoch: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class OpenStream(_message.Message):
    __slots__ = ("dataset", "columns", "batch_size", "shard_bytes", "shuffle", "seed", "num_epochs", "process_index", "process_count", "start", "codec", "accept_codecs", "initial_credits", "fingerprint", "no_narrowing", "accept_checksums", "shard_rows", "resume", "shuffle_window_bytes", "drop_last", "parts", "part_index", "image_size", "decode", "on_bad_image", "filter", "sql", "decode_threads", "wants", "fill_null", "null_masks", "null_masks_all", "categories", "images", "max_image_pixels")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHARD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    NUM_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_CODECS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CREDITS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NO_NARROWING_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    SHARD_ROWS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    DROP_LAST_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    PART_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    ON_BAD_IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    DECODE_THREADS_FIELD_NUMBER: _ClassVar[int]
    WANTS_FIELD_NUMBER: _ClassVar[int]
    FILL_NULL_FIELD_NUMBER: _ClassVar[int]
    NULL_MASKS_FIELD_NUMBER: _ClassVar[int]
    NULL_MASKS_ALL_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    batch_size: int
    shard_bytes: int
    shuffle: bool
    seed: int
    num_epochs: int
    process_index: int
    process_count: int
    start: Position
    codec: str
    accept_codecs: _containers.RepeatedScalarFieldContainer[str]
    initial_credits: int
    fingerprint: str
    no_narrowing: bool
    accept_checksums: _containers.RepeatedScalarFieldContainer[str]
    shard_rows: int
    resume: Cursor
    shuffle_window_bytes: int
    drop_last: bool
    parts: _containers.RepeatedCompositeFieldContainer[Layout]
    part_index: int
    image_size: _containers.RepeatedScalarFieldContainer[int]
    decode: str
    on_bad_image: str
    filter: str
    sql: str
    decode_threads: int
    wants: bool
    fill_null: _containers.RepeatedCompositeFieldContainer[FillNull]
    null_masks: _containers.RepeatedScalarFieldContainer[str]
    null_masks_all: bool
    categories: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedScalarFieldContainer[str]
    max_image_pixels: int
    def __init__(self, dataset: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., batch_size: _Optional[int] = ..., shard_bytes: _Optional[int] = ..., shuffle: bool = ..., seed: _Optional[int] = ..., num_epochs: _Optional[int] = ..., process_index: _Optional[int] = ..., process_count: _Optional[int] = ..., start: _Optional[_Union[Position, _Mapping]] = ..., codec: _Optional[str] = ..., accept_codecs: _Optional[_Iterable[str]] = ..., initial_credits: _Optional[int] = ..., fingerprint: _Optional[str] = ..., no_narrowing: bool = ..., accept_checksums: _Optional[_Iterable[str]] = ..., shard_rows: _Optional[int] = ..., resume: _Optional[_Union[Cursor, _Mapping]] = ..., shuffle_window_bytes: _Optional[int] = ..., drop_last: bool = ..., parts: _Optional[_Iterable[_Union[Layout, _Mapping]]] = ..., part_index: _Optional[int] = ..., image_size: _Optional[_Iterable[int]] = ..., decode: _Optional[str] = ..., on_bad_image: _Optional[str] = ..., filter: _Optional[str] = ..., sql: _Optional[str] = ..., decode_threads: _Optional[int] = ..., wants: bool = ..., fill_null: _Optional[_Iterable[_Union[FillNull, _Mapping]]] = ..., null_masks: _Optional[_Iterable[str]] = ..., null_masks_all: bool = ..., categories: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[str]] = ..., max_image_pixels: _Optional[int] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: int
    def __init__(self, shards: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("epoch", "sequence", "waited_seconds", "decode_seconds", "images_decoded")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WAITED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_DECODED_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sequence: int
    waited_seconds: float
    decode_seconds: float
    images_decoded: int
    def __init__(self, epoch: _Optional[int] = ..., sequence: _Optional[int] = ..., waited_seconds: _Optional[float] = ..., decode_seconds: _Optional[float] = ..., images_decoded: _Optional[int] = ...) -> None: ...

class Want(_message.Message):
    __slots__ = ("epoch", "sequence", "have")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HAVE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sequence: int
    have: bytes
    def __init__(self, epoch: _Optional[int] = ..., sequence: _Optional[int] = ..., have: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("open", "credit", "ack", "want")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    WANT_FIELD_NUMBER: _ClassVar[int]
    open: OpenStream
    credit: Credit
    ack: Ack
    want: Want
    def __init__(self, open: _Optional[_Union[OpenStream, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., want: _Optional[_Union[Want, _Mapping]] = ...) -> None: ...

class StreamPlan(_message.Message):
    __slots__ = ("fingerprint", "num_rows", "shard_rows", "shards_per_epoch", "columns", "seed", "batches_per_epoch", "dropped_rows", "layout", "row_name_column")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    SHARD_ROWS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ROWS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    ROW_NAME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    num_rows: int
    shard_rows: int
    shards_per_epoch: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnInfo]
    seed: int
    batches_per_epoch: int
    dropped_rows: int
    layout: Layout
    row_name_column: str
    def __init__(self, fingerprint: _Optional[str] = ..., num_rows: _Optional[int] = ..., shard_rows: _Optional[int] = ..., shards_per_epoch: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnInfo, _Mapping]]] = ..., seed: _Optional[int] = ..., batches_per_epoch: _Optional[int] = ..., dropped_rows: _Optional[int] = ..., layout: _Optional[_Union[Layout, _Mapping]] = ..., row_name_column: _Optional[str] = ...) -> None: ...

class TensorHeader(_message.Message):
    __slots__ = ("name", "dtype", "shape", "wire_dtype", "codec", "byte_shuffle", "offset", "wire_size", "raw_size", "checksum", "checksum_algorithm", "kind", "lengths")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    WIRE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    BYTE_SHUFFLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    WIRE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RAW_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    wire_dtype: str
    codec: str
    byte_shuffle: bool
    offset: int
    wire_size: int
    raw_size: int
    checksum: int
    checksum_algorithm: str
    kind: str
    lengths: TensorHeader
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., wire_dtype: _Optional[str] = ..., codec: _Optional[str] = ..., byte_shuffle: bool = ..., offset: _Optional[int] = ..., wire_size: _Optional[int] = ..., raw_size: _Optional[int] = ..., checksum: _Optional[int] = ..., checksum_algorithm: _Optional[str] = ..., kind: _Optional[str] = ..., lengths: _Optional[_Union[TensorHeader, _Mapping]] = ...) -> None: ...

class ShardHeader(_message.Message):
    __slots__ = ("epoch", "sequence", "num_rows", "tensors", "last_in_epoch", "skipped_rows", "produce_seconds")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    LAST_IN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_ROWS_FIELD_NUMBER: _ClassVar[int]
    PRODUCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    sequence: int
    num_rows: int
    tensors: _containers.RepeatedCompositeFieldContainer[TensorHeader]
    last_in_epoch: bool
    skipped_rows: _containers.RepeatedScalarFieldContainer[int]
    produce_seconds: float
    def __init__(self, epoch: _Optional[int] = ..., sequence: _Optional[int] = ..., num_rows: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[TensorHeader, _Mapping]]] = ..., last_in_epoch: bool = ..., skipped_rows: _Optional[_Iterable[int]] = ..., produce_seconds: _Optional[float] = ...) -> None: ...

class ShardFrame(_message.Message):
    __slots__ = ("plan", "shard", "payload", "header_checksum", "header_checksum_algorithm")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADER_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    HEADER_CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    plan: StreamPlan
    shard: ShardHeader
    payload: bytes
    header_checksum: int
    header_checksum_algorithm: str
    def __init__(self, plan: _Optional[_Union[StreamPlan, _Mapping]] = ..., shard: _Optional[_Union[ShardHeader, _Mapping]] = ..., payload: _Optional[bytes] = ..., header_checksum: _Optional[int] = ..., header_checksum_algorithm: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("name", "total_size", "data", "sha256", "offset", "folder")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_size: int
    data: bytes
    sha256: str
    offset: int
    folder: str
    def __init__(self, name: _Optional[str] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., folder: _Optional[str] = ...) -> None: ...

class UploadProbe(_message.Message):
    __slots__ = ("name", "total_size", "sha256", "folder")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_size: int
    sha256: str
    folder: str
    def __init__(self, name: _Optional[str] = ..., total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., folder: _Optional[str] = ...) -> None: ...

class UploadOffset(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class FinishFolderRequest(_message.Message):
    __slots__ = ("folder", "name", "files", "overwrite")
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    folder: str
    name: str
    files: _containers.RepeatedScalarFieldContainer[str]
    overwrite: bool
    def __init__(self, folder: _Optional[str] = ..., name: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., overwrite: bool = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("name", "size", "modified", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    modified: float
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., modified: _Optional[float] = ..., sha256: _Optional[str] = ...) -> None: ...

class FilesRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class FilesResponse(_message.Message):
    __slots__ = ("files", "truncated")
    FILES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    truncated: bool
    def __init__(self, files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ..., truncated: bool = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("name", "offset", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("file", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: FileEntry
    data: bytes
    def __init__(self, file: _Optional[_Union[FileEntry, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadResult(_message.Message):
    __slots__ = ("name", "size", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("dataset", "columns", "filter", "limit", "sql", "resume", "fingerprint", "accept_codecs", "accept_checksums", "codec")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_CODECS_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_CHECKSUMS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    limit: int
    sql: str
    resume: ReadCursor
    fingerprint: str
    accept_codecs: _containers.RepeatedScalarFieldContainer[str]
    accept_checksums: _containers.RepeatedScalarFieldContainer[str]
    codec: str
    def __init__(self, dataset: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ..., limit: _Optional[int] = ..., sql: _Optional[str] = ..., resume: _Optional[_Union[ReadCursor, _Mapping]] = ..., fingerprint: _Optional[str] = ..., accept_codecs: _Optional[_Iterable[str]] = ..., accept_checksums: _Optional[_Iterable[str]] = ..., codec: _Optional[str] = ...) -> None: ...

class ReadCursor(_message.Message):
    __slots__ = ("block", "offset", "rows")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    block: int
    offset: int
    rows: int
    def __init__(self, block: _Optional[int] = ..., offset: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class TableChunk(_message.Message):
    __slots__ = ("ipc", "checksum", "checksum_algorithm", "codec", "next", "fingerprint")
    IPC_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ipc: bytes
    checksum: int
    checksum_algorithm: str
    codec: str
    next: ReadCursor
    fingerprint: str
    def __init__(self, ipc: _Optional[bytes] = ..., checksum: _Optional[int] = ..., checksum_algorithm: _Optional[str] = ..., codec: _Optional[str] = ..., next: _Optional[_Union[ReadCursor, _Mapping]] = ..., fingerprint: _Optional[str] = ...) -> None: ...
