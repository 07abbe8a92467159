package stats

import dto "github.com/prometheus/client_model/go"

// dtoMetric holds a written metric for the tests.
type dtoMetric struct{ Metric dto.Metric }
