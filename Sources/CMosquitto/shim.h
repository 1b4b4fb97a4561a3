#ifndef ECOWATT_CMOSQUITTO_SHIM_H
#define ECOWATT_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#endif
