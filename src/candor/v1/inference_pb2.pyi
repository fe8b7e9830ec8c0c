from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_FLOAT32: _ClassVar[DataType]
    DATA_TYPE_INT32: _ClassVar[DataType]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]

class FeedbackOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_OUTCOME_UNSPECIFIED: _ClassVar[FeedbackOutcome]
    FEEDBACK_OUTCOME_ACCEPTED: _ClassVar[FeedbackOutcome]
    FEEDBACK_OUTCOME_UNKNOWN_ID: _ClassVar[FeedbackOutcome]
    FEEDBACK_OUTCOME_DUPLICATE: _ClassVar[FeedbackOutcome]
    FEEDBACK_OUTCOME_EXPIRED: _ClassVar[FeedbackOutcome]

class DriftState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_STATE_UNSPECIFIED: _ClassVar[DriftState]
    DRIFT_STATE_OK: _ClassVar[DriftState]
    DRIFT_STATE_WARN: _ClassVar[DriftState]
    DRIFT_STATE_DRIFT: _ClassVar[DriftState]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_FLOAT32: DataType
DATA_TYPE_INT32: DataType
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
FEEDBACK_OUTCOME_UNSPECIFIED: FeedbackOutcome
FEEDBACK_OUTCOME_ACCEPTED: FeedbackOutcome
FEEDBACK_OUTCOME_UNKNOWN_ID: FeedbackOutcome
FEEDBACK_OUTCOME_DUPLICATE: FeedbackOutcome
FEEDBACK_OUTCOME_EXPIRED: FeedbackOutcome
DRIFT_STATE_UNSPECIFIED: DriftState
DRIFT_STATE_OK: DriftState
DRIFT_STATE_WARN: DriftState
DRIFT_STATE_DRIFT: DriftState

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "raw_data", "float_data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RAW_DATA_FIELD_NUMBER: _ClassVar[int]
    FLOAT_DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DataType
    raw_data: bytes
    float_data: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DataType, str]] = ..., raw_data: _Optional[bytes] = ..., float_data: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "version", "inputs", "top_k", "return_logits", "columnar", "coverage", "conformal_method")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    RETURN_LOGITS_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    CONFORMAL_METHOD_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    inputs: Tensor
    top_k: int
    return_logits: bool
    columnar: bool
    coverage: float
    conformal_method: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., inputs: _Optional[_Union[Tensor, _Mapping]] = ..., top_k: _Optional[int] = ..., return_logits: _Optional[bool] = ..., columnar: _Optional[bool] = ..., coverage: _Optional[float] = ..., conformal_method: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "version", "probabilities", "confidences", "prediction_ids", "top_k", "top_k_indices", "top_k_names", "top_k_probabilities", "logits", "request_id", "top_k_index", "top_k_probability", "prediction_set_size", "prediction_set_index", "coverage", "conformal_method")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_K_INDICES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_NAMES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOP_K_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SET_INDEX_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    CONFORMAL_METHOD_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    probabilities: Tensor
    confidences: _containers.RepeatedScalarFieldContainer[float]
    prediction_ids: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    top_k_indices: _containers.RepeatedScalarFieldContainer[int]
    top_k_names: _containers.RepeatedScalarFieldContainer[str]
    top_k_probabilities: _containers.RepeatedScalarFieldContainer[float]
    logits: Tensor
    request_id: str
    top_k_index: Tensor
    top_k_probability: Tensor
    prediction_set_size: Tensor
    prediction_set_index: Tensor
    coverage: float
    conformal_method: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., confidences: _Optional[_Iterable[float]] = ..., prediction_ids: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., top_k_indices: _Optional[_Iterable[int]] = ..., top_k_names: _Optional[_Iterable[str]] = ..., top_k_probabilities: _Optional[_Iterable[float]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., request_id: _Optional[str] = ..., top_k_index: _Optional[_Union[Tensor, _Mapping]] = ..., top_k_probability: _Optional[_Union[Tensor, _Mapping]] = ..., prediction_set_size: _Optional[_Union[Tensor, _Mapping]] = ..., prediction_set_index: _Optional[_Union[Tensor, _Mapping]] = ..., coverage: _Optional[float] = ..., conformal_method: _Optional[str] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("request", "correlation_id")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    request: PredictRequest
    correlation_id: str
    def __init__(self, request: _Optional[_Union[PredictRequest, _Mapping]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("response", "correlation_id", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: PredictResponse
    correlation_id: str
    error: StreamError
    def __init__(self, response: _Optional[_Union[PredictResponse, _Mapping]] = ..., correlation_id: _Optional[str] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "state", "message", "task", "class_names", "num_features", "temperature", "provider", "smoothing_convention", "smoothing_epsilon", "test_ece", "test_accuracy", "max_batch_size", "calibration_method", "max_rows_per_request", "conformal_methods", "recommended_conformal_method", "default_coverage", "max_coverage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_CONVENTION_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_EPSILON_FIELD_NUMBER: _ClassVar[int]
    TEST_ECE_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CONFORMAL_METHODS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_CONFORMAL_METHOD_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    state: ModelState
    message: str
    task: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    num_features: int
    temperature: _containers.RepeatedScalarFieldContainer[float]
    provider: str
    smoothing_convention: str
    smoothing_epsilon: float
    test_ece: float
    test_accuracy: float
    max_batch_size: int
    calibration_method: str
    max_rows_per_request: int
    conformal_methods: _containers.RepeatedScalarFieldContainer[str]
    recommended_conformal_method: str
    default_coverage: float
    max_coverage: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., message: _Optional[str] = ..., task: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., num_features: _Optional[int] = ..., temperature: _Optional[_Iterable[float]] = ..., provider: _Optional[str] = ..., smoothing_convention: _Optional[str] = ..., smoothing_epsilon: _Optional[float] = ..., test_ece: _Optional[float] = ..., test_accuracy: _Optional[float] = ..., max_batch_size: _Optional[int] = ..., calibration_method: _Optional[str] = ..., max_rows_per_request: _Optional[int] = ..., conformal_methods: _Optional[_Iterable[str]] = ..., recommended_conformal_method: _Optional[str] = ..., default_coverage: _Optional[float] = ..., max_coverage: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model", "versions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., versions: _Optional[_Iterable[str]] = ...) -> None: ...

class FeedbackItem(_message.Message):
    __slots__ = ("prediction_id", "label", "probabilities", "logits")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    label: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    logits: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, prediction_id: _Optional[str] = ..., label: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., logits: _Optional[_Iterable[float]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("model", "version", "items")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    items: _containers.RepeatedCompositeFieldContainer[FeedbackItem]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., items: _Optional[_Iterable[_Union[FeedbackItem, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("outcomes", "accepted", "unknown_id", "duplicate", "expired")
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedScalarFieldContainer[FeedbackOutcome]
    accepted: int
    unknown_id: int
    duplicate: int
    expired: int
    def __init__(self, outcomes: _Optional[_Iterable[_Union[FeedbackOutcome, str]]] = ..., accepted: _Optional[int] = ..., unknown_id: _Optional[int] = ..., duplicate: _Optional[int] = ..., expired: _Optional[int] = ...) -> None: ...

class GetCalibrationRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ReliabilityBin(_message.Message):
    __slots__ = ("upper_edge", "count", "confidence", "accuracy")
    UPPER_EDGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    upper_edge: float
    count: int
    confidence: float
    accuracy: float
    def __init__(self, upper_edge: _Optional[float] = ..., count: _Optional[int] = ..., confidence: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class ReferenceSignals(_message.Message):
    __slots__ = ("accuracy", "ece", "mean_confidence", "confidence_histogram", "class_frequencies", "source", "ece_low", "ece_high")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    CLASS_FREQUENCIES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ECE_LOW_FIELD_NUMBER: _ClassVar[int]
    ECE_HIGH_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    ece: float
    mean_confidence: float
    confidence_histogram: _containers.RepeatedScalarFieldContainer[float]
    class_frequencies: _containers.RepeatedScalarFieldContainer[float]
    source: str
    ece_low: float
    ece_high: float
    def __init__(self, accuracy: _Optional[float] = ..., ece: _Optional[float] = ..., mean_confidence: _Optional[float] = ..., confidence_histogram: _Optional[_Iterable[float]] = ..., class_frequencies: _Optional[_Iterable[float]] = ..., source: _Optional[str] = ..., ece_low: _Optional[float] = ..., ece_high: _Optional[float] = ...) -> None: ...

class DriftSignals(_message.Message):
    __slots__ = ("rows", "confidence_psi", "confidence_js_distance", "prediction_psi", "expected_accuracy", "expected_accuracy_gap", "mean_entropy", "confidence_state", "prediction_state")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_PSI_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_JS_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_PSI_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_GAP_FIELD_NUMBER: _ClassVar[int]
    MEAN_ENTROPY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_STATE_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_STATE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    confidence_psi: float
    confidence_js_distance: float
    prediction_psi: float
    expected_accuracy: float
    expected_accuracy_gap: float
    mean_entropy: float
    confidence_state: DriftState
    prediction_state: DriftState
    def __init__(self, rows: _Optional[int] = ..., confidence_psi: _Optional[float] = ..., confidence_js_distance: _Optional[float] = ..., prediction_psi: _Optional[float] = ..., expected_accuracy: _Optional[float] = ..., expected_accuracy_gap: _Optional[float] = ..., mean_entropy: _Optional[float] = ..., confidence_state: _Optional[_Union[DriftState, str]] = ..., prediction_state: _Optional[_Union[DriftState, str]] = ...) -> None: ...

class ObservedSignals(_message.Message):
    __slots__ = ("rows", "accuracy", "ece", "nll", "brier", "expected_accuracy", "accuracy_gap", "reliability", "ece_low", "ece_high", "accuracy_gap_low", "accuracy_gap_high", "debiased_rms_ece", "set_coverage")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    NLL_FIELD_NUMBER: _ClassVar[int]
    BRIER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_GAP_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    ECE_LOW_FIELD_NUMBER: _ClassVar[int]
    ECE_HIGH_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_GAP_LOW_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_GAP_HIGH_FIELD_NUMBER: _ClassVar[int]
    DEBIASED_RMS_ECE_FIELD_NUMBER: _ClassVar[int]
    SET_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    accuracy: float
    ece: float
    nll: float
    brier: float
    expected_accuracy: float
    accuracy_gap: float
    reliability: _containers.RepeatedCompositeFieldContainer[ReliabilityBin]
    ece_low: float
    ece_high: float
    accuracy_gap_low: float
    accuracy_gap_high: float
    debiased_rms_ece: float
    set_coverage: _containers.RepeatedCompositeFieldContainer[SetCoverage]
    def __init__(self, rows: _Optional[int] = ..., accuracy: _Optional[float] = ..., ece: _Optional[float] = ..., nll: _Optional[float] = ..., brier: _Optional[float] = ..., expected_accuracy: _Optional[float] = ..., accuracy_gap: _Optional[float] = ..., reliability: _Optional[_Iterable[_Union[ReliabilityBin, _Mapping]]] = ..., ece_low: _Optional[float] = ..., ece_high: _Optional[float] = ..., accuracy_gap_low: _Optional[float] = ..., accuracy_gap_high: _Optional[float] = ..., debiased_rms_ece: _Optional[float] = ..., set_coverage: _Optional[_Iterable[_Union[SetCoverage, _Mapping]]] = ...) -> None: ...

class SetCoverage(_message.Message):
    __slots__ = ("method", "coverage", "rows", "covered", "covered_low", "covered_high", "mean_size")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COVERED_FIELD_NUMBER: _ClassVar[int]
    COVERED_LOW_FIELD_NUMBER: _ClassVar[int]
    COVERED_HIGH_FIELD_NUMBER: _ClassVar[int]
    MEAN_SIZE_FIELD_NUMBER: _ClassVar[int]
    method: str
    coverage: float
    rows: int
    covered: float
    covered_low: float
    covered_high: float
    mean_size: float
    def __init__(self, method: _Optional[str] = ..., coverage: _Optional[float] = ..., rows: _Optional[int] = ..., covered: _Optional[float] = ..., covered_low: _Optional[float] = ..., covered_high: _Optional[float] = ..., mean_size: _Optional[float] = ...) -> None: ...

class GetCalibrationResponse(_message.Message):
    __slots__ = ("model", "version", "temperature", "reference", "drift", "observed", "calibration_method", "prior_shift", "prior_shift_reason", "last_prediction_at", "idle")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SHIFT_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SHIFT_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_PREDICTION_AT_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    temperature: _containers.RepeatedScalarFieldContainer[float]
    reference: ReferenceSignals
    drift: DriftSignals
    observed: ObservedSignals
    calibration_method: str
    prior_shift: PriorShift
    prior_shift_reason: str
    last_prediction_at: float
    idle: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., temperature: _Optional[_Iterable[float]] = ..., reference: _Optional[_Union[ReferenceSignals, _Mapping]] = ..., drift: _Optional[_Union[DriftSignals, _Mapping]] = ..., observed: _Optional[_Union[ObservedSignals, _Mapping]] = ..., calibration_method: _Optional[str] = ..., prior_shift: _Optional[_Union[PriorShift, _Mapping]] = ..., prior_shift_reason: _Optional[str] = ..., last_prediction_at: _Optional[float] = ..., idle: _Optional[bool] = ...) -> None: ...

class PriorShift(_message.Message):
    __slots__ = ("rows", "window_start", "window_end", "priors", "priors_low", "priors_high", "assumed_priors", "training_priors", "em_iterations", "converged", "log_likelihood_ratio", "p_value", "total_variation", "expected_accuracy", "expected_accuracy_low", "expected_accuracy_high", "labelled_rows", "observed_accuracy")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    PRIORS_FIELD_NUMBER: _ClassVar[int]
    PRIORS_LOW_FIELD_NUMBER: _ClassVar[int]
    PRIORS_HIGH_FIELD_NUMBER: _ClassVar[int]
    ASSUMED_PRIORS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PRIORS_FIELD_NUMBER: _ClassVar[int]
    EM_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_RATIO_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VARIATION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_LOW_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_HIGH_FIELD_NUMBER: _ClassVar[int]
    LABELLED_ROWS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    rows: int
    window_start: float
    window_end: float
    priors: _containers.RepeatedScalarFieldContainer[float]
    priors_low: _containers.RepeatedScalarFieldContainer[float]
    priors_high: _containers.RepeatedScalarFieldContainer[float]
    assumed_priors: _containers.RepeatedScalarFieldContainer[float]
    training_priors: _containers.RepeatedScalarFieldContainer[float]
    em_iterations: int
    converged: bool
    log_likelihood_ratio: float
    p_value: float
    total_variation: float
    expected_accuracy: float
    expected_accuracy_low: float
    expected_accuracy_high: float
    labelled_rows: int
    observed_accuracy: float
    def __init__(self, rows: _Optional[int] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., priors: _Optional[_Iterable[float]] = ..., priors_low: _Optional[_Iterable[float]] = ..., priors_high: _Optional[_Iterable[float]] = ..., assumed_priors: _Optional[_Iterable[float]] = ..., training_priors: _Optional[_Iterable[float]] = ..., em_iterations: _Optional[int] = ..., converged: _Optional[bool] = ..., log_likelihood_ratio: _Optional[float] = ..., p_value: _Optional[float] = ..., total_variation: _Optional[float] = ..., expected_accuracy: _Optional[float] = ..., expected_accuracy_low: _Optional[float] = ..., expected_accuracy_high: _Optional[float] = ..., labelled_rows: _Optional[int] = ..., observed_accuracy: _Optional[float] = ...) -> None: ...

class RecalibrateRequest(_message.Message):
    __slots__ = ("model", "version", "holdout_share", "min_rows", "dry_run", "method", "since", "newest_rows", "include_client_recorded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    NEWEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CLIENT_RECORDED_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    holdout_share: float
    min_rows: int
    dry_run: bool
    method: str
    since: float
    newest_rows: int
    include_client_recorded: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., holdout_share: _Optional[float] = ..., min_rows: _Optional[int] = ..., dry_run: _Optional[bool] = ..., method: _Optional[str] = ..., since: _Optional[float] = ..., newest_rows: _Optional[int] = ..., include_client_recorded: _Optional[bool] = ...) -> None: ...

class RecalibrateResponse(_message.Message):
    __slots__ = ("published", "new_version", "old_temperature", "new_temperature", "fit_rows", "holdout_rows", "holdout_nll_before", "holdout_nll_after", "holdout_ece_before", "holdout_ece_after", "message", "method", "selected_by", "nll_improvement", "nll_improvement_low", "nll_improvement_high", "window_start", "window_end", "label_counts", "rows_without_logits", "validation_nll_before", "validation_nll_after", "included_client_recorded", "coverage_target", "holdout_coverage_before", "holdout_coverage_before_low", "holdout_coverage_before_high", "holdout_coverage_after", "holdout_coverage_after_low", "holdout_coverage_after_high", "prior_shift")
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    OLD_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    NEW_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    FIT_ROWS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ROWS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_NLL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_NLL_AFTER_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ECE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ECE_AFTER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SELECTED_BY_FIELD_NUMBER: _ClassVar[int]
    NLL_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    NLL_IMPROVEMENT_LOW_FIELD_NUMBER: _ClassVar[int]
    NLL_IMPROVEMENT_HIGH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_WITHOUT_LOGITS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NLL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NLL_AFTER_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_CLIENT_RECORDED_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_TARGET_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_BEFORE_LOW_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_BEFORE_HIGH_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_AFTER_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_AFTER_LOW_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COVERAGE_AFTER_HIGH_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SHIFT_FIELD_NUMBER: _ClassVar[int]
    published: bool
    new_version: str
    old_temperature: float
    new_temperature: float
    fit_rows: int
    holdout_rows: int
    holdout_nll_before: float
    holdout_nll_after: float
    holdout_ece_before: float
    holdout_ece_after: float
    message: str
    method: str
    selected_by: str
    nll_improvement: float
    nll_improvement_low: float
    nll_improvement_high: float
    window_start: float
    window_end: float
    label_counts: _containers.RepeatedScalarFieldContainer[int]
    rows_without_logits: int
    validation_nll_before: float
    validation_nll_after: float
    included_client_recorded: bool
    coverage_target: float
    holdout_coverage_before: float
    holdout_coverage_before_low: float
    holdout_coverage_before_high: float
    holdout_coverage_after: float
    holdout_coverage_after_low: float
    holdout_coverage_after_high: float
    prior_shift: PriorShift
    def __init__(self, published: _Optional[bool] = ..., new_version: _Optional[str] = ..., old_temperature: _Optional[float] = ..., new_temperature: _Optional[float] = ..., fit_rows: _Optional[int] = ..., holdout_rows: _Optional[int] = ..., holdout_nll_before: _Optional[float] = ..., holdout_nll_after: _Optional[float] = ..., holdout_ece_before: _Optional[float] = ..., holdout_ece_after: _Optional[float] = ..., message: _Optional[str] = ..., method: _Optional[str] = ..., selected_by: _Optional[str] = ..., nll_improvement: _Optional[float] = ..., nll_improvement_low: _Optional[float] = ..., nll_improvement_high: _Optional[float] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., label_counts: _Optional[_Iterable[int]] = ..., rows_without_logits: _Optional[int] = ..., validation_nll_before: _Optional[float] = ..., validation_nll_after: _Optional[float] = ..., included_client_recorded: _Optional[bool] = ..., coverage_target: _Optional[float] = ..., holdout_coverage_before: _Optional[float] = ..., holdout_coverage_before_low: _Optional[float] = ..., holdout_coverage_before_high: _Optional[float] = ..., holdout_coverage_after: _Optional[float] = ..., holdout_coverage_after_low: _Optional[float] = ..., holdout_coverage_after_high: _Optional[float] = ..., prior_shift: _Optional[_Union[PriorShift, _Mapping]] = ...) -> None: ...
