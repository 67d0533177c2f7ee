module github.com/zmqkit/zmqkit/acceptance/fault

go 1.24.0

require github.com/zmqkit/zmqkit v0.0.0

replace github.com/zmqkit/zmqkit => ../..

require (
	github.com/pebbe/zmq4 v1.4.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/text v0.34.0 // indirect
)
