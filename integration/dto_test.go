package integration

import dto "github.com/prometheus/client_model/go"

// dtoFamily is a parsed Prometheus metric family.
type dtoFamily = dto.MetricFamily
