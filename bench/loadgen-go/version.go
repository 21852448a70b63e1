package main

import "github.com/eclipse/paho.mqtt.golang/packets"

// version prints the packet library the generator encodes with, and proves the build links it.
func init() {
	register("version", mode{
		summary: "print the generator's packet library and exit",
		run: func(args []string) error {
			p := packets.NewControlPacket(packets.Pingreq)
			return emit(map[string]string{"packets": "github.com/eclipse/paho.mqtt.golang/packets v1.5.1", "probe": p.String()})
		},
	})
}
