module mqtt-gateway/loadgen

go 1.24.0

require github.com/eclipse/paho.mqtt.golang v1.5.1
