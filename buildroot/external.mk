include $(sort $(wildcard $(BR2_EXTERNAL_NANOMQ_PATH)/package/*/*.mk))
