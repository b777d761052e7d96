// Package deploy holds the deployment kit of sluice-enrich and the tests that
// check it: the Kubernetes manifests under kubernetes/ (strictly decoded
// into the Kubernetes API types, so that a misspelt field fails), the KEDA
// autoscaling examples, the Prometheus alert rules under prometheus/
// (promtool check rules and promtool test rules), the Grafana dashboard
// under grafana/, and the static build of the Dockerfile at the repository
// root.
//
// It is a module of its own, so that k8s.io/api never enters the graph of
// programs that import sluice. scripts/test.sh tests it like every module.
package deploy
